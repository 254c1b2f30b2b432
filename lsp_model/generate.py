"""Batched decoding for DialoGPT: greedy, sampling and beam search over a KV cache.

Contexts are token-id lists (turns joined by EOS, ending with EOS). A batch is LEFT padded, with
an attention mask and position ids computed from that mask (`cumsum(mask) - 1`), so a padded row
sees exactly the positions it would see alone: batched output equals unbatched output (the bug
of transformers #7745/#8032 and DialoGPT #20 was right padding, or left padding with positions
counted from the pads).

We own the loop instead of calling `model.generate`: it is short, and it lets every processor
below follow one documented order, prune finished rows from the cache, and report the model's
own log-probability of each hypothesis (needed by MMI and by the tests).

Processor order, applied to the next-token logits of every row:
  1. repetition penalty on tokens already in the context or the reply (EOS exempt);
  2. no_repeat_ngram_size: ban tokens that would repeat an n-gram of the reply;
  3. min_new_tokens: ban EOS while the reply is shorter;
  4. sampling only: temperature, top-k, top-p.
Greedy takes the argmax; beam search ranks by the summed log-softmax of the processed logits.
"""
from __future__ import annotations

import heapq

import torch
from transformers import DynamicCache


# The settings, presets and flags live in the light generation_args (no torch), so scripts parse
# their flags before importing torch; re-exported here for the decoder's callers.
from .generation_args import CHAT_PRESET, PRESETS, GenConfig, check_config, make_gen_config  # noqa: E402,F401


def check_vocab(model, tok, source: str = "model") -> int:
    """The usable vocabulary size; a clear error if the tokenizer's ids do not fit the model."""
    n_tok, n_model = tok.get_vocab_size(), model.config.vocab_size
    if n_tok > n_model:
        raise ValueError(f"{source}: the tokenizer has {n_tok} tokens but the model's vocabulary has "
                         f"{n_model}: they do not belong together (pass the model's own --tokenizer)")
    return n_tok  # a model padded beyond the tokenizer (e.g. 50304) never emits the extra ids


# ---------------------------------------------------------------------------------------------
# batching and the model step


def left_pad(contexts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    L = max(len(c) for c in contexts)
    ids = torch.full((len(contexts), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(contexts), L), dtype=torch.long)
    for i, c in enumerate(contexts):
        if c:
            ids[i, L - len(c):] = torch.tensor(c)
            mask[i, L - len(c):] = 1
    return ids, mask


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted over real tokens only, so left pads do not shift a row's positions."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _forward(model, ids, mask, pos, cache):
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache,
                use_cache=True, logits_to_keep=1)
    return out.logits[:, -1].float(), out.cache


def _prefill(model, contexts, pad_id, expand, device):
    """Run the padded contexts once, then copy each row's cache `expand` times."""
    if not contexts or any(len(c) == 0 for c in contexts):
        raise ValueError("every context needs at least one token (an empty context is [EOS])")
    n_pos = model.config.n_positions
    too_long = [len(c) for c in contexts if len(c) > n_pos - 1]
    if too_long:
        raise ValueError(f"context of {max(too_long)} tokens leaves no room in n_positions={n_pos}; "
                         "truncate it first (chat.fit_context)")
    ids, mask = left_pad(contexts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    pos = positions_from_mask(mask)
    logits, cache = _forward(model, ids, mask, pos, DynamicCache())
    if expand > 1:
        cache.batch_repeat_interleave(expand)
        logits, mask = logits.repeat_interleave(expand, 0), mask.repeat_interleave(expand, 0)
    last_pos = mask.sum(-1, keepdim=True) - 1
    return logits, cache, mask, last_pos


def _seen_tokens(contexts, expand, vocab, device) -> torch.Tensor:
    seen = torch.zeros((len(contexts) * expand, vocab), dtype=torch.bool, device=device)
    for i, c in enumerate(contexts):
        seen[i * expand:(i + 1) * expand, torch.tensor(c, device=device)] = True
    return seen


# ---------------------------------------------------------------------------------------------
# logits processors


def apply_repetition_penalty(logits, seen, penalty, eos_id):
    if penalty == 1.0:
        return logits
    # EOS separates every turn of the context; penalising it would stop replies from ending.
    seen = seen.clone()
    seen[:, eos_id] = False
    pen = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, pen, logits)


def banned_ngram_mask(gen: torch.Tensor, n: int, vocab: int) -> torch.Tensor | None:
    """[N, vocab] True where the token would complete an n-gram already in the row's reply."""
    N, T = gen.shape
    if n <= 0 or T < n:
        return None
    windows = gen.unfold(1, n, 1)                                      # [N, T-n+1, n]
    if n == 1:
        hit = torch.ones(windows.shape[:2], dtype=torch.bool, device=gen.device)
    else:
        hit = (windows[:, :, :-1] == gen[:, T - n + 1:].unsqueeze(1)).all(-1)
    banned = torch.zeros((N, vocab + 1), dtype=torch.bool, device=gen.device)
    tok = torch.where(hit, windows[:, :, -1], torch.full_like(windows[:, :, -1], vocab))
    banned.scatter_(1, tok, True)
    return banned[:, :vocab]


def process_logits(logits, cfg: GenConfig, step: int, gen, seen, eos_id: int, vocab_limit: int):
    if vocab_limit < logits.shape[-1]:
        logits[:, vocab_limit:] = float("-inf")
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, cfg.repetition_penalty, eos_id)
    banned = banned_ngram_mask(gen, cfg.no_repeat_ngram_size, logits.shape[-1]) if gen is not None else None
    if banned is not None:
        logits = logits.masked_fill(banned, float("-inf"))
    if step < cfg.min_new_tokens:
        logits[:, eos_id] = float("-inf")
    return logits


def sampling_filter(logits, temperature: float, top_k: int, top_p: float):
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, -1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens before it already reach top_p (the first one always stays)
        drop = probs.cumsum(-1) - probs >= top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def _draw(logits, gens: list[torch.Generator]) -> torch.Tensor:
    """One token per row by inverse CDF, with one uniform from that row's own generator, so a
    row's sample does not depend on which other rows share its batch."""
    probs = logits.softmax(-1)
    cdf = probs.cumsum(-1)
    u = torch.stack([torch.rand((), generator=g) for g in gens]).to(cdf.device)
    tok = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).squeeze(1)
    return tok.clamp(max=logits.shape[-1] - 1)


def row_seed(seed: int, index: int, j: int = 0) -> int:
    return (seed * 1_000_003 + index * 1009 + j) % (2 ** 63)


# ---------------------------------------------------------------------------------------------
# greedy and sampling


@torch.no_grad()
def generate(model, contexts: list[list[int]], cfg: GenConfig, eos_id: int, vocab_limit: int | None = None,
             indices: list[int] | None = None) -> list[list[dict]]:
    """Decode every context; returns per context a list of hypotheses, best first:
    {"ids": reply token ids (without EOS), "logprob": the model's log P(reply + EOS | context)
     (unprocessed distribution), "score": the ranking score, "finished": ended with EOS}.

    `indices` (default 0..B-1) name the contexts for sampling seeds: context i always draws from
    the generator seeded by (cfg.seed, i), whatever its batch.
    """
    check_config(cfg)
    vocab_limit = vocab_limit or model.config.vocab_size
    if cfg.num_beams > 1:
        return beam_search(model, contexts, cfg, eos_id, vocab_limit)
    device = next(model.parameters()).device
    n_ret = cfg.num_return_sequences
    indices = list(range(len(contexts))) if indices is None else indices
    logits, cache, mask, pos = _prefill(model, contexts, eos_id, n_ret, device)
    N = logits.shape[0]
    gens = [torch.Generator().manual_seed(row_seed(cfg.seed, indices[r // n_ret], r % n_ret)) for r in range(N)]
    seen = _seen_tokens(contexts, n_ret, logits.shape[-1], device) if cfg.repetition_penalty != 1.0 else None
    gen = torch.empty((N, 0), dtype=torch.long, device=device)
    rows = torch.arange(N, device=device)        # original row of each live row
    out_ids: list[list[int] | None] = [None] * N
    logprob = torch.zeros(N, device=device)
    out_lp = [0.0] * N
    finished = [False] * N
    for step in range(cfg.max_new_tokens):
        raw = logits.log_softmax(-1)
        proc = process_logits(logits.clone(), cfg, step, gen, seen, eos_id, vocab_limit)
        if cfg.do_sample:
            tok = _draw(sampling_filter(proc, cfg.temperature, cfg.top_k, cfg.top_p), [gens[r] for r in rows.tolist()])
        else:
            tok = proc.argmax(-1)
        logprob = logprob + raw.gather(1, tok[:, None]).squeeze(1)
        done = tok == eos_id
        if step == cfg.max_new_tokens - 1:
            done = torch.ones_like(done)
        for i in done.nonzero().flatten().tolist():
            r = rows[i].item()
            ended = tok[i].item() == eos_id
            out_ids[r] = gen[i].tolist() + ([] if ended else [tok[i].item()])
            out_lp[r], finished[r] = logprob[i].item(), ended
        keep = (~done).nonzero().flatten()
        if keep.numel() == 0:
            break
        if keep.numel() < done.numel():  # prune finished rows from every per-row tensor and the cache
            cache.batch_select_indices(keep)
            tok, gen, mask, pos, rows, logprob = tok[keep], gen[keep], mask[keep], pos[keep], rows[keep], logprob[keep]
            seen = seen[keep] if seen is not None else None
        gen = torch.cat([gen, tok[:, None]], 1)
        if seen is not None:
            seen[torch.arange(len(tok), device=device), tok] = True
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        pos = pos + 1
        logits, cache = _forward(model, tok[:, None], mask, pos, cache)
    hyps = [{"ids": out_ids[r], "logprob": out_lp[r], "score": out_lp[r], "finished": finished[r]} for r in range(N)]
    return [sorted(hyps[b * n_ret:(b + 1) * n_ret], key=lambda h: -h["score"]) if n_ret > 1
            else hyps[b * n_ret:(b + 1) * n_ret] for b in range(len(contexts))]


# ---------------------------------------------------------------------------------------------
# beam search


class _Closed:
    """The best `k` closed hypotheses of one context: a min-heap of (score / length **
    length_penalty, insertion number, ids, raw logprob, ended)."""

    def __init__(self, k: int, length_penalty: float):
        self.k, self.length_penalty, self.heap, self.n = k, length_penalty, [], 0

    def add(self, score, length, ids, raw, ended):
        self.n += 1
        entry = (score / length ** self.length_penalty, self.n, ids, raw, ended)
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, entry)
        elif entry[0] > self.heap[0][0]:
            heapq.heapreplace(self.heap, entry)

    def beats(self, best_open: float, length: int) -> bool:
        """k hypotheses closed, and no open beam (best summed score best_open) can beat the worst."""
        return len(self.heap) >= self.k and self.heap[0][0] >= best_open / length ** self.length_penalty

    def best(self, n: int) -> list[tuple]:
        return sorted(self.heap, key=lambda e: (-e[0], e[1]))[:n]


@torch.no_grad()
def beam_search(model, contexts: list[list[int]], cfg: GenConfig, eos_id: int, vocab_limit: int) -> list[list[dict]]:
    """Beam search with `num_beams` beams per context (HF-style bookkeeping: the 2K best
    continuations are scanned; an EOS among the top K closes a hypothesis scored
    sum_logprob / (reply_len + 1) ** length_penalty; a context is done when K hypotheses are
    closed and no open beam can beat the worst of them)."""
    device = next(model.parameters()).device
    B, K = len(contexts), cfg.num_beams
    logits, cache, mask, pos = _prefill(model, contexts, eos_id, K, device)
    V = logits.shape[-1]
    seen = _seen_tokens(contexts, K, V, device) if cfg.repetition_penalty != 1.0 else None
    beam_scores = torch.full((B, K), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0                      # all K beams start identical: expand one
    beam_scores = beam_scores.flatten()
    raw_lp = torch.zeros(B * K, device=device)
    gen = torch.empty((B * K, 0), dtype=torch.long, device=device)
    items = list(range(B))                        # original context of each live item
    closed = [_Closed(K, cfg.length_penalty) for _ in range(B)]

    for step in range(cfg.max_new_tokens):
        raw = logits.log_softmax(-1)
        proc = process_logits(logits.clone(), cfg, step, gen, seen, eos_id, vocab_limit)
        logp = proc.log_softmax(-1)
        n_items = len(items)
        cand = (beam_scores[:, None] + logp).view(n_items, K * V)
        top_scores, top_idx = cand.topk(2 * K, dim=1)
        top_beam, top_tok = (top_idx // V).tolist(), (top_idx % V).tolist()
        top_scores = top_scores.tolist()
        last = step == cfg.max_new_tokens - 1
        src, toks, scores, keep_items = [], [], [], []
        for j, b in enumerate(items):
            chosen = []
            for rank in range(2 * K):
                s = top_scores[j][rank]
                if s == float("-inf"):
                    break
                row, t = j * K + top_beam[j][rank], top_tok[j][rank]
                if t == eos_id:
                    if rank < K:
                        closed[b].add(s, step + 1, gen[row].tolist(), raw_lp[row].item() + raw[row, t].item(), True)
                    continue
                chosen.append((row, t, s))
                if len(chosen) == K:
                    break
            done = not chosen or closed[b].beats(max(c[2] for c in chosen), step + 1)
            if last and not done:  # out of length: the open beams become hypotheses, unfinished
                for row, t, s in chosen:
                    closed[b].add(s, step + 1, gen[row].tolist() + [t], raw_lp[row].item() + raw[row, t].item(), False)
                done = True
            if done:
                continue
            while len(chosen) < K:             # (tiny vocabularies) repeat the last beam, never -inf rows
                chosen.append(chosen[-1])
            keep_items.append(b)
            for row, t, s in chosen:
                src.append(row); toks.append(t); scores.append(s)
        if not keep_items:
            break
        src_t = torch.tensor(src, device=device)
        tok = torch.tensor(toks, device=device)
        cache.reorder_cache(src_t)
        raw_lp = raw_lp[src_t] + raw[src_t, tok]
        beam_scores = torch.tensor(scores, device=device)
        gen = torch.cat([gen[src_t], tok[:, None]], 1)
        mask = torch.cat([mask[src_t], torch.ones((len(src), 1), dtype=mask.dtype, device=device)], 1)
        pos = pos[src_t] + 1
        if seen is not None:
            seen = seen[src_t]
            seen[torch.arange(len(src), device=device), tok] = True
        items = keep_items
        logits, cache = _forward(model, tok[:, None], mask, pos, cache)
    return [[{"ids": ids, "logprob": raw, "score": score, "finished": ended}
             for score, _, ids, raw, ended in c.best(cfg.num_return_sequences)] for c in closed]


def batch_order(lengths: list[int], batch_size: int, window: int = 8) -> list[list[int]]:
    """Batches of context indices. Contexts are taken in input order, `batch_size * window` at a
    time, and sorted by length inside that window (less padding, so less wasted compute), which
    keeps the finished work close to an input-order prefix if a run is interrupted."""
    if batch_size == 1:  # nothing to gain from sorting: keep the exact input order
        return [[i] for i in range(len(lengths))]
    out = []
    span = batch_size * window
    for start in range(0, len(lengths), span):
        idx = sorted(range(start, min(start + span, len(lengths))), key=lambda i: (lengths[i], i))
        out += [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    return out
