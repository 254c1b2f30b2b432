"""DialoGPT's model layer: tokenizer, GPT-2 LM with the DialoGPT loss, checkpoint formats."""
from .checkpoint import (CheckpointError, load_model, read_state_dict, save_original_pkl,
                         save_pretrained)
from .model import (build_model, forward_logits, forward_loss, forward_pointwise, load_config,
                    lm_loss, make_config, pointwise_nll)
from .tokenizer import EOS_ID, decode, encode, encode_batch, eos_id, load_tokenizer

__all__ = ["CheckpointError", "load_model", "read_state_dict", "save_original_pkl", "save_pretrained",
           "build_model", "forward_logits", "forward_loss", "forward_pointwise", "load_config", "lm_loss",
           "make_config", "pointwise_nll", "EOS_ID", "decode", "encode", "encode_batch", "eos_id",
           "load_tokenizer"]
