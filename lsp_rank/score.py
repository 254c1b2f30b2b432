"""Scoring (context, candidate) token sequences with ranker heads: batched and length-bucketed.

DialogRPT's input (ScorerBase.predict): every context turn `encode(turn.strip()) + [EOS]`, then
`encode(hyp.strip())` with no trailing EOS; the score is read at the candidate's last token.
Here that position comes from each sequence's own length (never from pad detection), rows are
right-padded (causal attention keeps real tokens from seeing the pads) with explicit positions
0..len-1, and sequences are sorted by length before batching, so a score does not depend on
which other sequences share its batch. A sequence longer than the model keeps its right end
(the newest context and the candidate), as DialogRPT's training feeder cuts.
"""
from __future__ import annotations

import torch

from lsp_model.tokenizer import EOS_ID, encode_batch


def context_ids(tok, turns: list[str], max_cxt_turn: int | None = None) -> list[int]:
    """turn_1 EOS ... turn_n EOS over the last `max_cxt_turn` turns (all when None), each stripped."""
    if max_cxt_turn is not None:
        turns = turns[-max_cxt_turn:]
    ids: list[int] = []
    for t in encode_batch(tok, [t.strip() for t in turns]):
        ids += t + [EOS_ID]
    return ids


def pair_ids(tok, turns: list[str], hyps: list[str], max_cxt_turn: int | None = None) -> list[list[int]]:
    """The sequence of every candidate of one context."""
    ctx = context_ids(tok, turns, max_cxt_turn)
    return [ctx + h for h in encode_batch(tok, [h.strip() for h in hyps])]


def batches_by_length(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (stable), cut into runs of `batch_size`: little padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def last_token_logits(model, ids: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """score · h at position len-1 of each row (with grad when enabled); fp32 [rows]."""
    pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    mask = (pos < lens[:, None]).long()  # as DialogRPT; causal attention alone would do for right pads
    h = model.transformer(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=False).last_hidden_state
    last = h[torch.arange(ids.shape[0], device=ids.device), lens - 1]
    # a row-wise dot product, not a GEMM whose kernel (and rounding) depends on the row count
    return (last.float() * model.score.weight[0].float()).sum(-1)


def pad_rows(seqs: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids right-padded with EOS, lengths) as tensors on `device`."""
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), EOS_ID, dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
    return ids.to(device), torch.tensor([len(s) for s in seqs], device=device)


def fit(seq: list[int], n_positions: int) -> list[int]:
    """The right end of a sequence longer than the model."""
    return seq[-n_positions:] if len(seq) > n_positions else seq


@torch.no_grad()
def head_logits(model, seqs: list[list[int]], batch_size: int = 32) -> torch.Tensor:
    """Logits of every sequence (any order, any lengths >= 1) under one head, fp32 [n]."""
    device = next(model.parameters()).device
    n_pos = model.config.n_positions
    out = torch.empty(len(seqs), dtype=torch.float32)
    for idx in batches_by_length([min(len(s), n_pos) for s in seqs], batch_size):
        ids, lens = pad_rows([fit(seqs[i], n_pos) for i in idx], device)
        out[idx] = last_token_logits(model, ids, lens).cpu()
    return out
