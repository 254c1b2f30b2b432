"""Scoring (context, candidate) token sequences with ranker heads: batched and length-bucketed.

DialogRPT's input (ScorerBase.predict): every context turn `encode(turn.strip()) + [EOS]`, then
`encode(hyp.strip())` with no trailing EOS; the score is read at the candidate's last token.
Here that position comes from each sequence's own length (never from pad detection), rows are
right-padded (causal attention keeps real tokens from seeing the pads) with explicit positions
0..len-1, and sequences are sorted by length before batching, so a score does not depend on
which other sequences share its batch. A sequence longer than the model keeps its right end
(the newest context and the candidate), as DialogRPT's training feeder cuts.

Candidates of one context share its tokens, so `group_logits` runs each context once and every
candidate on top of its KV cache: 16 candidates of a 100-token context cost 100 + 16 * len(reply)
token positions instead of 16 * (100 + len(reply)), with the same numbers (the causal model sees
exactly the same tokens at the same positions). Both passes run lsp_model.kv_cache's GPT-2
forward: the candidates' runs share one preallocated key/value buffer, and the last block works
only at the scored position (the only one read).
"""
from __future__ import annotations

import torch

from lsp_model.kv_cache import gpt2_hidden
from lsp_model.tokenizer import EOS_ID, encode_batch


def context_ids(tok, turns: list[str], max_cxt_turn: int | None = None) -> list[int]:
    """turn_1 EOS ... turn_n EOS over the last `max_cxt_turn` turns (all when None), each stripped."""
    if max_cxt_turn is not None:
        turns = turns[-max_cxt_turn:]
    ids: list[int] = []
    for t in encode_batch(tok, [t.strip() for t in turns]):
        ids += t + [EOS_ID]
    return ids


def candidate_ids(tok, hyps: list[str]) -> list[list[int]]:
    return encode_batch(tok, [h.strip() for h in hyps])


def batches_by_length(lengths: list[int], batch_size: int, waste: float = 0.25) -> list[list[int]]:
    """Indices sorted by length (stable), cut into runs of at most `batch_size` whose padding
    stays under `waste` of their real tokens (a long tail gets runs of its own)."""
    runs: list[list[int]] = []
    total = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        run = runs[-1] if runs else None
        if run is None or len(run) == batch_size or (len(run) + 1) * lengths[i] > (1 + waste) * (total + lengths[i]):
            runs.append([i])
            total = lengths[i]
        else:
            run.append(i)
            total += lengths[i]
    return runs


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


Group = tuple[list[int], list[list[int]]]  # (context ids, candidate ids of that context)


@torch.no_grad()
def group_logits(model, groups: list[Group], batch_size: int = 32) -> torch.Tensor:
    """Logits of every candidate of every group (flat, in order), each context run once. A group
    with a sequence longer than the model goes through `head_logits` (right ends kept)."""
    n_pos = model.config.n_positions
    starts, total = [], 0
    for ctx, hs in groups:
        starts.append(total)
        total += len(hs)
    out = torch.empty(total, dtype=torch.float32)
    fits = [g for g, (ctx, hs) in enumerate(groups) if len(ctx) + max(map(len, hs), default=0) <= n_pos and ctx]
    long = sorted(set(range(len(groups))) - set(fits))
    if long:
        rows = [starts[g] + j for g in long for j in range(len(groups[g][1]))]
        out[rows] = head_logits(model, [groups[g][0] + h for g in long for h in groups[g][1]], batch_size)
    for i in range(0, len(fits), batch_size):  # bounded memory: the cached contexts of one chunk
        chunk = fits[i:i + batch_size]
        _shared_chunk(model, [groups[g] for g in chunk], [starts[g] for g in chunk], out, batch_size)
    return out


CONTEXT_ROWS = 8  # contexts per context pass at most (sorted by length, little padding)


def _shared_chunk(model, groups: list[Group], starts: list[int], out: torch.Tensor, batch_size: int) -> None:
    """The contexts once (sorted by length, CONTEXT_ROWS per pass), their keys/values kept in one
    right-padded buffer; then every candidate of the chunk, sorted by length in runs of
    `batch_size`, each row reading its context's keys/values at positions len(context) + j. The
    runs share one preallocated key/value buffer (contexts copied in, candidates written after
    them): no per-run cache, padding or concatenation. An empty candidate is scored at its
    context's last token. Both passes are GPT-2's forward of lsp_model.kv_cache."""
    device = next(model.parameters()).device
    ln_f = model.transformer.ln_f
    hyps = [h for _, hs in groups for h in hs]
    owner = [g for g, (_, hs) in enumerate(groups) for _ in hs]
    C_max, H_max = max(len(c) for c, _ in groups), max(map(len, hyps), default=0)
    ctx_kv = cand_kv = None  # [layer, k/v, row, head, position, head width], zeros where unused
    hidden = None
    for run in batches_by_length([len(c) for c, _ in groups], CONTEXT_ROWS):
        ids, lens = pad_rows([groups[g][0] for g in run], device)
        rows = torch.tensor(run, device=device)

        def keep(layer, k, v):  # right pads need no mask: causal attention keeps them unseen
            nonlocal ctx_kv
            if ctx_kv is None:
                ctx_kv = k.new_zeros((len(model.transformer.h), 2, len(groups), k.shape[1], C_max, k.shape[3]))
            ctx_kv[layer, 0, rows, :, :k.shape[2]] = k
            ctx_kv[layer, 1, rows, :, :k.shape[2]] = v
            return k, v
        x = gpt2_hidden(model, ids, torch.arange(ids.shape[1], device=device).expand_as(ids), keep, None, lens - 1)
        h = ln_f(x[:, 0])
        if hidden is None:
            hidden = h.new_empty((len(groups), h.shape[1]))
        hidden[rows] = h
    last = hidden[torch.tensor(owner, device=device)]
    for run in batches_by_length([len(h) for h in hyps], batch_size):
        run = [r for r in run if hyps[r]]
        if not run:
            continue
        own = [owner[r] for r in run]
        n = len(run)
        c_lens = torch.tensor([len(groups[g][0]) for g in own], device=device)
        C = int(c_lens.max())
        if cand_kv is None:
            cand_kv = ctx_kv.new_zeros((*ctx_kv.shape[:2], min(batch_size, len(hyps)), ctx_kv.shape[3],
                                        C_max + H_max, ctx_kv.shape[5]))
        for r, g in enumerate(own):  # columns past a context's length: masked (zeros or earlier rows', finite)
            n_c = len(groups[g][0])
            cand_kv[:, :, r, :, :n_c].copy_(ctx_kv[:, :, g, :, :n_c])
        h_ids, h_lens = pad_rows([hyps[r] for r in run], device)
        H = h_ids.shape[1]

        def attend(layer, k, v):
            cand_kv[layer, 0, :n, :, C:C + H] = k
            cand_kv[layer, 1, :n, :, C:C + H] = v
            return cand_kv[layer, 0, :n, :, :C + H], cand_kv[layer, 1, :n, :, :C + H]
        seen = torch.cat([(torch.arange(C, device=device) < c_lens[:, None])[:, None, None, :].expand(n, 1, H, C),
                          torch.ones((H, H), dtype=torch.bool, device=device).tril().expand(n, 1, H, H)], -1)
        x = gpt2_hidden(model, h_ids, c_lens[:, None] + torch.arange(H, device=device), attend, seen, h_lens - 1)
        last[torch.tensor(run, device=device)] = ln_f(x[:, 0])
    rows = [s + j for s, (_, hs) in zip(starts, groups) for j in range(len(hs))]
    out[rows] = (last.float() * model.score.weight[0].float()).sum(-1).cpu()
