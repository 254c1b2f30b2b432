"""One DialogRPT ranker head: a GPT-2 body and `score = Linear(d, 1, bias=False)`.

Held in memory as transformers' GPT2ForSequenceClassification (num_labels 1, pad 50256), whose
keys (`transformer.*`, `score.weight`) are those of DialogRPT's `.pth` files, so every form
loads into it and `save_ranker` writes the `microsoft/DialogRPT-*` folder layout. Its forward
(which finds the scored token by pad detection, a rule transformers has changed between
releases) is never used: lsp_rank.score takes the position from explicit lengths.

Forms read (`load_head`):
  * DialogRPT `.pth` (or any torch.save / safetensors file) holding `score.weight`;
  * a DialoGPT `.pkl` language model: the score head is row 50256 (EOS) of
    `lm_head.decoder.weight`, as DialogRPT's Scorer.load does;
  * a transformers folder (GPT2ForSequenceClassification, or a DialoGPT LM folder as above).
The size comes from the tensors (lsp_model.checkpoint.infer_config); a config.json beside the
file wins. Nothing but tensors is unpickled (weights_only).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from lsp_io.atomic import atomic_dir
from lsp_model.checkpoint import CheckpointError, infer_config, read_state_dict, resolve_checkpoint, to_hf_keys
from lsp_model.model import load_config, make_config
from lsp_model.tokenizer import EOS_ID

# DialoGPT language-model files read as a ranker through their EOS row (DialogRPT converts
# `.pkl` only; any other file without `score.weight` is refused, here as there).
LM_SUFFIXES = (".pkl",)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
ARCH_KEYS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon")


def guess_heads(n_embd: int) -> int:
    """Head count for a width no released GPT-2 has, when no config.json names one: head width 64
    (as every released GPT-2) from 128 up, else 16 (tiny test models: 32 -> 2, 64 -> 4)."""
    return n_embd // 64 if n_embd >= 128 else max(1, n_embd // 16)


def ranker_config(sd: dict[str, torch.Tensor], config_file: Path | None, source: str) -> GPT2Config:
    """The ranker's GPT2Config: a config.json beside the checkpoint, else read from the tensors."""
    if config_file is not None:
        cfg = load_config(config_file)
    else:
        try:
            cfg = infer_config(sd, source=source)
        except CheckpointError as e:
            if "head count is unknown" not in str(e):
                raise
            n_embd = sd["transformer.wte.weight"].shape[1]
            cfg = infer_config(sd, source=source, n_head=guess_heads(n_embd))
            print(f"note: {source}: n_embd={n_embd} is not a released size and no config.json is beside it; "
                  f"assuming n_head={cfg.n_head}", file=sys.stderr)
    return make_config(**{k: getattr(cfg, k) for k in ARCH_KEYS}, num_labels=1, pad_token_id=EOS_ID)


def ranker_state_dict(sd: dict[str, torch.Tensor], weights: Path, is_dir: bool) -> dict[str, torch.Tensor]:
    """`transformer.*` + `score.weight` from a ranker or (a .pkl / folder) a DialoGPT LM."""
    score = next((sd[k] for k in ("score.weight", "module.score.weight") if k in sd), None)
    hf = to_hf_keys({k: v for k, v in sd.items() if not k.endswith("score.weight")})
    lm = hf.pop("lm_head.weight", None)
    if score is None:
        if not (is_dir or weights.suffix in LM_SUFFIXES):
            raise CheckpointError(f"{weights}: no score.weight: a language model, not a ranker (a DialoGPT "
                                  f"language model is read as a ranker only from a .pkl or a model folder)")
        table = lm if lm is not None else hf.get("transformer.wte.weight")
        if table is None or table.shape[0] <= EOS_ID:
            raise CheckpointError(f"{weights}: neither score.weight nor an LM head with row {EOS_ID} (EOS)")
        score = table[EOS_ID:EOS_ID + 1]  # DialogRPT Scorer.load: the EOS logit is the score
    if score.dim() != 2 or score.shape[0] != 1:
        raise CheckpointError(f"{weights}: score.weight has shape {tuple(score.shape)}, expected (1, n_embd)")
    return hf | {"score.weight": score}


def load_head(path: str | os.PathLike, dtype: str = "fp32", device: str = "cpu") -> GPT2ForSequenceClassification:
    """One ranker head in eval mode, from any form in this module's docstring."""
    p = Path(path)
    weights, config_file = resolve_checkpoint(p)
    if weights is None:
        raise CheckpointError(f"{p}: a config.json without weights is not a ranker")
    sd = ranker_state_dict(read_state_dict(weights), weights, p.is_dir())
    cfg = ranker_config(sd, config_file, str(weights))
    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = GPT2ForSequenceClassification(cfg)
    own = model.state_dict()
    bad = sorted(set(own) ^ set(sd)) + [k for k in own if k in sd and own[k].shape != sd[k].shape]
    if bad:
        raise CheckpointError(f"{weights} does not fit a ranker with n_layer={cfg.n_layer} n_embd={cfg.n_embd} "
                              f"n_positions={cfg.n_positions}: {', '.join(bad[:6])}" + (" ..." if len(bad) > 6 else ""))
    model.load_state_dict({k: v.to(DTYPES[dtype]) for k, v in sd.items()}, strict=True, assign=True)
    return model.to(device).eval()


def save_ranker(model: GPT2ForSequenceClassification, out_dir: str | os.PathLike, tokenizer=None) -> Path:
    """A transformers folder (safetensors, config, GPT-2 tokenizer files) that every loader reads,
    transformers' AutoModelForSequenceClassification included. Written atomically."""
    from lsp_model.tokenizer import load_tokenizer, save_tokenizer
    out = Path(out_dir)
    with atomic_dir(out, overwrite=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        save_tokenizer(tokenizer if tokenizer is not None else load_tokenizer(), tmp)
    return out
