"""LoRA adapters (peft): the adapter folder, merging, and merge-on-load for every decoding path.

An adapter folder (LSP_train's `GP2-pretrain-step-N-lora/`) is peft's format plus what makes it
self-contained:
  adapter_config.json         peft's LoraConfig; base_model_name_or_path = the base checkpoint
  adapter_model.safetensors   the LoRA weights only
  lora_base.json              {"base": path, "sha256": of the base weights the adapter was trained on}
  config.json, tokenizer      the run's architecture and tokenizer (decoding reads them here)
`load_merged` rebuilds the base from any form `lsp_model.checkpoint` reads, checks its sha256,
applies the adapter with peft and merges it: the result is a plain GPT2LMHeadModel.
peft and torch are imported only when an adapter is used (pip install dialogpt[lora]).
"""
from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

from .runfolder import ADAPTER_CONFIG, adapter_path, adapter_steps, is_adapter, weight_steps

ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_FILE = "lora_base.json"
DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")  # GPT-2's attention and MLP Conv1D layers


def find_adapter(path) -> Path | None:
    """The adapter folder `path` names: itself, or in a LoRA run folder the newest adapter when
    no merged .pkl of that step or later exists (the end of training writes one). Else None."""
    p = Path(path)
    if is_adapter(p):
        return p
    steps, pkls = adapter_steps(p), weight_steps(p)
    if not steps or (pkls and pkls[0] >= steps[0]):
        return None
    return adapter_path(p, steps[0])


def newest_adapter(run_dir) -> Path | None:
    """The highest-step GP2-pretrain-step-N-lora/ of a run folder."""
    steps = adapter_steps(run_dir)
    return adapter_path(run_dir, steps[0]) if steps else None


def import_peft():
    try:
        import peft
    except ImportError:
        from .checkpoint import CheckpointError
        raise CheckpointError("LoRA needs the peft library: pip install 'dialogpt[lora]'") from None
    return peft


@contextlib.contextmanager
def quiet_peft():
    """peft reads transformers' deprecated `is_gradient_checkpointing` (their code, not ours)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


def add_lora(model, r: int, alpha: float, dropout: float, targets=DEFAULT_TARGETS):
    """`model` (a GPT2LMHeadModel) with LoRA layers injected in place; returns the PeftModel.
    Every base weight is frozen; only lora_A/lora_B train."""
    peft = import_peft()
    cfg = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                          fan_in_fan_out=True, bias="none")  # GPT-2's Conv1D stores weights (in, out)
    with quiet_peft():
        return peft.get_peft_model(model, cfg)


def base_sha256(model) -> str:
    """sha256 of the model's weights (names, dtypes, shapes and bytes): identifies the base."""
    import hashlib
    import torch
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        if k == "lm_head.weight" or ".lora_" in k:  # tied to wte; adapter weights are not the base
            continue
        k = k.replace(".base_layer.", ".")
        v = v.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{k}:{tuple(v.shape)};".encode())
        h.update(v.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def adapter_state_dict(peft_model) -> dict:
    """The adapter weights, in peft's saved key layout, as fp32 CPU copies."""
    peft = import_peft()
    # save_embedding_layers=False: the embeddings are never adapted, and "auto" would look for the
    # base's config (warning for a .pkl base, asking the hub for a name)
    sd = peft.get_peft_model_state_dict(peft_model, save_embedding_layers=False)
    return {k: v.detach().to("cpu").float().clone() for k, v in sd.items()}


def load_adapter_state_dict(peft_model, sd: dict) -> None:
    peft = import_peft()
    res = peft.set_peft_model_state_dict(peft_model, sd)
    if getattr(res, "unexpected_keys", None):
        raise ValueError(f"adapter weights do not fit the model: unexpected {res.unexpected_keys[:4]}")


def save_adapter(peft_model, out_dir, base: str, sha256: str, config, tokenizer) -> Path:
    """The self-contained adapter folder (module docstring), written atomically."""
    from safetensors.torch import save_file

    from lsp_io.atomic import atomic_dir
    from .tokenizer import save_tokenizer
    out = Path(out_dir)
    with atomic_dir(out, overwrite=True) as tmp:
        cfg = peft_model.peft_config["default"]
        cfg.base_model_name_or_path = str(base)
        cfg.save_pretrained(str(tmp))
        save_file(adapter_state_dict(peft_model), str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (tmp / BASE_FILE).write_text(json.dumps({"base": str(base), "sha256": sha256}, indent=2) + "\n")
        (tmp / "config.json").write_text(config.to_json_string(use_diff=False))
        save_tokenizer(tokenizer, tmp)
    return out


def merge(peft_model):
    """The plain GPT2LMHeadModel with the adapter merged into its weights (in place: the LoRA
    layers are gone afterwards)."""
    with quiet_peft():
        return peft_model.merge_and_unload()


def adapter_base(adapter_dir) -> tuple[str, str | None]:
    """(base checkpoint path, its sha256 or None) recorded in an adapter folder."""
    from .checkpoint import CheckpointError
    d = Path(adapter_dir)
    try:
        if (d / BASE_FILE).is_file():
            info = json.loads((d / BASE_FILE).read_text())
            return info["base"], info.get("sha256")
        return json.loads((d / ADAPTER_CONFIG).read_text())["base_model_name_or_path"], None
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{d}: unreadable adapter description ({type(e).__name__}: {e})") from None


def load_merged(adapter_dir, config=None, attn_implementation: str = "sdpa", base: str | None = None):
    """A GPT2LMHeadModel: the adapter's base (any checkpoint form, `base` overrides the recorded
    path) with the adapter merged in. `config` wins over the adapter folder's config.json."""
    from .checkpoint import CheckpointError, load_model
    d = Path(adapter_dir)
    recorded, sha = adapter_base(d)
    base = base or recorded
    if not base or not Path(base).exists():
        raise CheckpointError(f"{d}: its base model {base or '(none recorded)'} is not found "
                              f"(python -m lsp_model.convert --merge {d} OUT --base PATH)")
    if config is None and (d / "config.json").is_file():
        config = d / "config.json"
    model = load_model(base, config=config, attn_implementation=attn_implementation)
    if sha is not None and base_sha256(model) != sha:
        raise CheckpointError(f"{d}: the base {base} is not the one the adapter was trained on "
                              f"(its weights' sha256 differs from {BASE_FILE})")
    peft = import_peft()
    try:
        with quiet_peft():
            pm = peft.PeftModel.from_pretrained(model, str(d), is_trainable=False)
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        raise CheckpointError(f"{d}: cannot apply the adapter ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return merge(pm)
