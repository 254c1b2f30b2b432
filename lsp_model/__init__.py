"""DialoGPT's model layer: tokenizer, GPT-2 LM with the DialoGPT loss, checkpoint formats.

Re-exports load lazily, so `from lsp_model.tokenizer import ...` (prepro, its workers) does not
pay for importing torch and transformers.
"""
import importlib

_EXPORTS = {
    "checkpoint": ["CheckpointError", "load_model", "read_state_dict", "save_original_pkl", "save_pretrained"],
    "model": ["build_model", "forward_logits", "forward_loss", "forward_pointwise", "load_config", "lm_loss",
              "make_config", "pointwise_nll"],
    "tokenizer": ["EOS_ID", "decode", "encode", "encode_batch", "eos_id", "load_tokenizer"],
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
