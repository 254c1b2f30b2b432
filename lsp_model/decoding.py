"""Loading checkpoints for decoding, and the MMI reranker: one setup for decode.py and interact.py."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from .checkpoint import load_model
from .generate import check_vocab
from .generation_args import GenConfig
from .mmi import rerank_batch
from .tokenizer import decode, encode_batch, eos_id, load_tokenizer, tokenizer_identity


def load_decoder(model_path, tokenizer_path=None, config=None, device="cpu"):
    """(model in eval mode, tokenizer, eos id, usable vocab size), vocabularies checked."""
    model = load_model(model_path, config=config).to(device).eval()
    tok = load_tokenizer(tokenizer_path or model_path)
    vocab = check_vocab(model, tok, source=f"{model_path} with tokenizer {tokenizer_path or model_path}")
    return model, tok, eos_id(tok), vocab


@dataclass
class Reranker:
    """MMI: candidates ranked by log P(context | candidate) under a reverse model
    (+ mmi_lambda * their forward log-probability)."""
    model: object
    eos: int                                        # the reverse tokenizer's EOS
    to_reverse_ids: Callable[[list[int]], list[int]] | None  # None: both models share a tokenizer
    mmi_lambda: float = 0.0
    batch_size: int = 32

    def __call__(self, contexts_turns: list[list[list[int]]], hyps: list[list[dict]]) -> list[list[dict]]:
        return rerank_batch(self.model, contexts_turns, hyps, self.eos, self.mmi_lambda, self.batch_size,
                            self.to_reverse_ids)


def load_reranker(path, tokenizer_path, forward_tok, device="cpu", mmi_lambda=0.0, batch_size=32) -> Reranker:
    """The reverse model at `path` (tokenizer: `tokenizer_path`, else the model's folder). With
    another vocabulary than `forward_tok`'s, candidate ids go through text."""
    rev, rtok, reos, _ = load_decoder(path, tokenizer_path or path, None, device)
    conv = None
    if tokenizer_identity(rtok) != tokenizer_identity(forward_tok):
        def conv(ids):
            return encode_batch(rtok, [decode(forward_tok, ids)])[0]
    return Reranker(rev, reos, conv, mmi_lambda, batch_size)


def candidates_config(cfg: GenConfig, num_candidates: int) -> GenConfig | None:
    """`cfg` drawing several candidates to rerank: every beam, or `num_candidates` samples.
    None for greedy decoding, which has one candidate only."""
    if cfg.num_beams > 1:
        return dataclasses.replace(cfg, num_return_sequences=cfg.num_beams)
    if cfg.do_sample:
        return dataclasses.replace(cfg, num_return_sequences=num_candidates)
    return None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
