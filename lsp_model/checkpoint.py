"""Every checkpoint format DialoGPT users have, in one adapter.

Reads: the original's `.pkl` state dicts (fp16 or fp32, `lm_head.decoder.weight`, `module.`
prefixes, `attn.bias` causal buffers), GPT-2 transformer-only dicts (`wte.weight`, `h.0...`),
transformers directories (safetensors or bin) and our training run folders.
Writes: transformers directories (safetensors + tokenizer + generation config + model card)
and the original `.pkl` layout, so the original's tools load our models.

Nothing is unpickled beyond tensors (`weights_only=True`), and every write is atomic.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from lsp_io.atomic import atomic_dir, atomic_file
from .model import build_model, load_config, make_config
from .runfolder import CKPT_PREFIX, latest_weights

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# Original key -> transformers key. The buffers `attn.bias` are recomputed, not stored.
RENAMES = {"lm_head.decoder.weight": "lm_head.weight"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .pkl/.pt/.bin (torch.save) or .safetensors file, on CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    try:
        with warnings.catch_warnings():  # torch's note on other pickle protocols: our error says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: {_load_failure(path, e)}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a resume checkpoint
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and (v is None or torch.is_tensor(v)) for k, v in obj.items()):
        raise CheckpointError(f"{path}: not a state dict (expected a dict of parameter name -> tensor)")
    return {k: v for k, v in obj.items() if v is not None}


def _load_failure(path: Path, e: Exception) -> str:
    """Why torch.load(weights_only=True) failed: a pickle that asks for code, or not a checkpoint."""
    if path.stat().st_size == 0:
        return "empty file (an interrupted copy?)"
    if isinstance(e, pickle.UnpicklingError) and (
            "unsupported global" in str(e).lower() or _pickle_imports_globals(path)):
        return ("refused to load: the pickle holds objects other than tensors, which "
                "weights_only=True never unpickles")
    return "not a PyTorch checkpoint (corrupt or truncated?)"


def _pickle_imports_globals(path: Path) -> bool:
    """True if the file is one complete pickle that imports a global (a class or function).
    pickletools only parses opcodes, it runs nothing."""
    import pickletools
    try:
        with open(path, "rb") as f:
            ops = [op.name for op, _, _ in pickletools.genops(f)]
    except Exception:
        return False  # not a complete pickle: garbage or truncated
    return any(name in ("GLOBAL", "STACK_GLOBAL", "INST") for name in ops)


def to_hf_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original / GPT-2 / DataParallel key layouts -> transformers GPT2LMHeadModel keys."""
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("module.")
        out[RENAMES.get(k, k)] = v
    if not any(k.startswith(("transformer.", "lm_head.")) for k in out):
        out = {f"transformer.{k}": v for k, v in out.items()}  # OpenAI GPT-2 transformer-only dict
    # causal-mask buffers, recomputed by the model
    return {k: v for k, v in out.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}


# n_embd -> n_head of the released GPT-2/DialoGPT sizes (117M, 345M, 762M): the only head counts
# a loader may assume, since the head count changes the outputs but not one tensor shape.
RELEASED_HEADS = {768: 12, 1024: 16, 1280: 20}


def infer_config(sd: dict[str, torch.Tensor], source: str = "checkpoint", n_head: int | None = None) -> GPT2Config:
    """Architecture from tensor shapes, for a checkpoint without a config.json. The shapes fix
    vocab, width, positions, layers and the MLP width; the head count is taken only for the
    released widths (RELEASED_HEADS), any other width is refused unless `n_head` is given."""
    sd = to_hf_keys(sd)
    try:
        vocab, n_embd = sd["transformer.wte.weight"].shape
        n_pos = sd["transformer.wpe.weight"].shape[0]
    except KeyError:
        raise CheckpointError(f"{source}: cannot infer the model size: no transformer.wte/wpe weights") from None
    if n_embd not in RELEASED_HEADS and n_head is None:
        raise CheckpointError(f"{source}: no config.json beside it and n_embd={n_embd} is not a released size "
                              f"(768/1024/1280), so the head count is unknown; pass --config CONFIG.json")
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"transformer\.h\.(\d+)\.", k))}
    d = {"vocab_size": vocab, "n_embd": n_embd, "n_positions": n_pos, "n_layer": len(layers),
         "n_head": RELEASED_HEADS.get(n_embd, n_head)}
    fc = sd.get("transformer.h.0.mlp.c_fc.weight")
    if fc is not None and fc.shape[1] != 4 * n_embd:
        d["n_inner"] = fc.shape[1]
    return make_config(**d)


def load_weights(model: GPT2LMHeadModel, sd: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load a state dict of any known layout into `model`, strictly, as fp32 (or the model's dtype).
    A mismatch names every differing tensor and its shapes."""
    sd = to_hf_keys(sd)
    own = model.state_dict()
    head = sd.pop("lm_head.weight", None)
    if head is not None and "transformer.wte.weight" not in sd:
        sd["transformer.wte.weight"] = head
    own.pop("lm_head.weight", None)  # tied to wte
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append("shape mismatch: " + "; ".join(wrong[:8]) + (" ..." if len(wrong) > 8 else ""))
        if missing:
            parts.append(f"missing {len(missing)} tensors, e.g. {', '.join(missing[:4])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensors, e.g. {', '.join(unexpected[:4])}")
        raise CheckpointError(f"{source} does not fit a model with n_layer={model.config.n_layer} "
                              f"n_embd={model.config.n_embd} n_positions={model.config.n_positions}: "
                              + " | ".join(parts))
    with torch.no_grad():
        for k, p in own.items():
            p.copy_(sd[k].to(p.dtype))
    model.tie_weights()


def resolve_checkpoint(path: str | os.PathLike) -> tuple[Path | None, Path | None]:
    """(weights file, config file or None) for a file, a transformers dir, or a run folder."""
    p = Path(path)
    if p.is_file():
        cfg = p.parent / "config.json"
        return p, cfg if cfg.is_file() else None
    if not p.is_dir():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    cfg = p / "config.json"
    cfg = cfg if cfg.is_file() else None
    for name in WEIGHT_FILES:
        if (p / name).is_file():
            return p / name, cfg
    ckpt = latest_weights(p)
    if ckpt is not None:
        return ckpt, cfg
    pkls = sorted(p.glob("*.pkl"))
    if len(pkls) == 1:
        return pkls[0], cfg
    if cfg is not None:
        return None, cfg  # a config-only folder (e.g. configs/117M): random init
    raise CheckpointError(f"{p}: no {', '.join(WEIGHT_FILES)}, {CKPT_PREFIX}*.pkl or single .pkl")


def load_model(path: str | os.PathLike, config: str | os.PathLike | GPT2Config | None = None,
               attn_implementation: str = "sdpa") -> GPT2LMHeadModel:
    """A GPT2LMHeadModel (fp32, eval mode off) from any checkpoint layout this toolkit knows.

    `config` (a config.json, a folder holding one, or a GPT2Config) wins over the checkpoint's
    own config.json; without either the size is inferred from tensor shapes. A LoRA adapter
    folder (or a LoRA run folder) is merged into its base on load (lsp_model.lora).
    """
    from .lora import find_adapter, load_merged
    adapter = find_adapter(path)
    if adapter is not None:
        return load_merged(adapter, config, attn_implementation)
    weights, cfg_file = resolve_checkpoint(path)
    sd = read_state_dict(weights) if weights is not None else None
    if isinstance(config, GPT2Config):
        cfg = config
    elif config is not None:
        cfg = load_config(config)
    elif cfg_file is not None:
        cfg = load_config(cfg_file)
    else:
        cfg = infer_config(sd, source=str(weights))
    model = build_model(cfg, attn_implementation)
    if sd is not None:
        load_weights(model, sd, source=str(weights))
    return model


# ---------------------------------------------------------------------------------------------
# writing

MODEL_CARD = """---
license: mit
tags:
- conversational
- dialogpt
---

## A State-of-the-Art Large-scale Pretrained Response generation model (DialoGPT)

DialoGPT is a large-scale pretrained dialogue response generation model for multi-turn
conversations (Zhang et al., ACL 2020 demo, arXiv:1911.00536). This checkpoint
({n_layer} layers, {n_embd} hidden, {n_head} heads, {n_params:,} parameters) was written by the
`dialogpt` toolkit. Turns are separated by `<|endoftext|>` (id 50256).

### How to use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
import torch

tokenizer = AutoTokenizer.from_pretrained("{name}")
model = AutoModelForCausalLM.from_pretrained("{name}")

history = None
for step in range(5):
    new = tokenizer.encode(input(">> User:") + tokenizer.eos_token, return_tensors="pt")
    ids = torch.cat([history, new], dim=-1) if history is not None else new
    history = model.generate(ids, max_new_tokens=64, pad_token_id=tokenizer.eos_token_id)
    print("DialoGPT:", tokenizer.decode(history[0, ids.shape[-1]:], skip_special_tokens=True))
```

With this toolkit: `python interact.py --model {name}` or `python decode.py --model {name} ...`.

### Chat template

`tokenizer_config.json` carries a chat template in DialoGPT's format: each user and assistant
turn followed by `<|endoftext|>`, system messages dropped, nothing added by
`add_generation_prompt`, and the assistant turns marked for `return_assistant_tokens_mask`
(the reply and its `<|endoftext|>`, what DialoGPT trains on). So message lists work directly:

```python
from transformers import pipeline
chat = pipeline("text-generation", model="{name}")
print(chat([{{"role": "user", "content": "Does money buy happiness?"}}], max_new_tokens=40)[0]["generated_text"][-1])
```

and so do `transformers serve {name}` and TRL's trainers on `messages` data.

### Decoding settings in generation_config.json

`generation_config.json` holds the toolkit's chat preset ({preset}): {settings}. So
`model.generate(ids)` samples as `interact.py` does, and never returns an empty reply
(`min_new_tokens` 1: the end-of-text token is banned as the first token).

`model.generate(ids, do_sample=False)` and `pipeline(..., do_sample=False)` are greedy but still
apply `no_repeat_ngram_size` {no_repeat} from this file, over the context and the reply alike. The
toolkit's greedy (`decode.py --preset greedy`) bans no n-gram, so the two can differ; pass
`no_repeat_ngram_size=0` to get the toolkit's greedy reply.
"""


def save_pretrained(model: GPT2LMHeadModel, out_dir: str | os.PathLike, tokenizer=None,
                    overwrite: bool = True) -> Path:
    """A transformers directory: safetensors weights, config, generation config, tokenizer files
    (tokenizer.json, vocab.json, merges.txt) and a model card. Written atomically."""
    from transformers import GenerationConfig

    from .generation_args import CHAT_PRESET, hf_generation_kwargs
    from .tokenizer import eos_id, load_tokenizer, save_tokenizer

    out = Path(out_dir)
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    eos = eos_id(tok)
    gen = hf_generation_kwargs(CHAT_PRESET)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, **gen).save_pretrained(tmp)
        save_tokenizer(tok, tmp)
        c = model.config
        n_params = sum(p.numel() for p in model.parameters())
        settings = ", ".join(f"`{k}` {v}" for k, v in gen.items())
        (tmp / "README.md").write_text(MODEL_CARD.format(
            n_layer=c.n_layer, n_embd=c.n_embd, n_head=c.n_head, n_params=n_params, name=out.name,
            preset=CHAT_PRESET, settings=settings, no_repeat=gen["no_repeat_ngram_size"]))
    return out


def original_state_dict(model: GPT2LMHeadModel, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The model's weights in the original layout and key order (`attn.bias` buffers included,
    `lm_head.decoder.weight` sharing storage with `transformer.wte.weight`)."""
    n = model.config.n_positions
    mask = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
    sd = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue
        v = v.detach().cpu()
        if dtype is not None:
            v = v.to(dtype)
        if k.endswith(".attn.c_attn.weight"):
            sd[k.replace("c_attn.weight", "bias")] = mask.to(v.dtype)
        sd[k] = v
    if hasattr(model, "lm_head"):  # a DialogRPT ranker (GPT2ForSequenceClassification) has score.weight instead
        sd["lm_head.decoder.weight"] = sd["transformer.wte.weight"]
    return sd


def save_original_pkl(model: GPT2LMHeadModel, path: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Save as the original's LSP_train.py did (`torch.save` of a CPU state dict), atomically."""
    path = Path(path)
    with atomic_file(path) as f:
        torch.save(original_state_dict(model, dtype), f)
    return path

