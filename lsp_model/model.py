"""The DialoGPT model: transformers' GPT2LMHeadModel configured as the original, and its loss.

The original (pytorch-pretrained-bert 0.6.1 GPT-2) has no dropout, gelu (tanh approximation),
LayerNorm eps 1e-5, a head tied to the word embedding, and token types that go through the
word embedding. Its labels are already shifted (position t predicts label t, -1 = ignored),
so the loss is computed here from logits instead of by transformers (which shifts internally
and would drop the final EOS label of an unpadded row).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

# Keys of the original's config.json that mean something to the original model.
_ORIGINAL_KEYS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "initializer_range",
                  "layer_norm_epsilon")


def make_config(**kw) -> GPT2Config:
    """A GPT2Config with the original's architecture defaults (no dropout, gelu_new, eps 1e-5)."""
    base = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                layer_norm_epsilon=1e-5, initializer_range=0.02, tie_word_embeddings=True,
                bos_token_id=50256, eos_token_id=50256)
    base.update(kw)
    return GPT2Config(**base)


def config_from_dict(d: dict) -> GPT2Config:
    """Accept transformers' config.json (has `model_type`) or the original's (`n_ctx`, ...)."""
    if "model_type" in d:
        return GPT2Config.from_dict(d)
    d = dict(d)
    if "n_positions" not in d and "n_ctx" in d:
        d["n_positions"] = d["n_ctx"]
    # The original ignored *_pdrop, n_special, predict_special_tokens: the model had no dropout.
    return make_config(**{k: d[k] for k in _ORIGINAL_KEYS if k in d})


def load_config(path: str | os.PathLike) -> GPT2Config:
    """A config from a config.json file or a folder holding one (original or transformers keys)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise FileNotFoundError(f"no config.json at {path}")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None
    return config_from_dict(d)


def init_weights_original(model: GPT2LMHeadModel) -> None:
    """The original's init: N(0, initializer_range) for Linear/Conv1D/Embedding, zero bias, LN 1/0.

    transformers additionally rescales the residual projections by 1/sqrt(2 n_layer); the
    original did not, so training from scratch uses this instead.
    """
    std = model.config.initializer_range
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name or name.startswith("transformer.ln_f"):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, std)


def build_model(config: GPT2Config, attn_implementation: str = "sdpa") -> GPT2LMHeadModel:
    config._attn_implementation = attn_implementation
    model = GPT2LMHeadModel(config)
    init_weights_original(model)
    return model


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token cross entropy [B, T] in fp32; 0 where the label is -1."""
    ce = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-1, reduction="none")
    return ce.view(labels.shape)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, ppl) as the original: loss = token mean over the whole batch;
    ppl = exp(mean over rows of each row's mean NLL), not exp(loss)."""
    ce = token_nll(logits, labels)
    n = (labels != -1).sum(1)
    loss = ce.sum() / n.sum()
    ppl = torch.exp((ce.sum(1) / n).mean())
    return loss, ppl


def pointwise_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (mean NLL, exp(mean NLL)), the original's forward_pointwise (used for MMI scoring)."""
    ce = token_nll(logits, labels)
    nll = ce.sum(1) / (labels != -1).sum(1)
    return nll, torch.exp(nll)


def forward_logits(model, input_ids, position_ids=None, token_type_ids=None, attention_mask=None):
    # An explicit all-ones mask: without one, transformers reads position ids that restart at 0
    # (the original's right padding) as packed sequences and hides earlier tokens from the pads,
    # which changes the pads' logits. The original attends causally over the whole row.
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    return model(input_ids=input_ids, position_ids=position_ids, token_type_ids=token_type_ids,
                 attention_mask=attention_mask, use_cache=False).logits


def forward_loss(model, input_ids, position_ids, token_type_ids, labels):
    """The original's `model(input_ids, position_ids, token_type_ids, lm_labels)` -> (loss, ppl).
    Pass token_type_ids=None for `--no_token_id true` (the default)."""
    return lm_loss(forward_logits(model, input_ids, position_ids, token_type_ids), labels)


def forward_pointwise(model, input_ids, position_ids, token_type_ids, labels):
    return pointwise_nll(forward_logits(model, input_ids, position_ids, token_type_ids), labels)
