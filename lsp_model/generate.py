"""Batched decoding for DialoGPT: greedy, sampling and beam search over a KV cache.

Contexts are token-id lists (turns joined by EOS, ending with EOS). A batch is LEFT padded, with
an attention mask and position ids computed from that mask (`cumsum(mask) - 1`), so a padded row
sees exactly the positions it would see alone: batched output equals unbatched output (the bug
of transformers #7745/#8032 and DialoGPT #20 was right padding, or left padding with positions
counted from the pads).

We own the loop instead of calling `model.generate`: ONE loop, `Decoder` (rows join and leave
between steps, each with its own settings; the server's streaming and continuous batching run on
it), over a preallocated KV cache (lsp_model.kv_cache); greedy and sampling `generate` is a thin
loop over it. It follows one documented processor order (Decoder's docstring), frees finished
rows at once, and reports the model's own log-probability of each hypothesis (needed by MMI and
by the tests) from a log-sum-exp, without a full-vocabulary log-softmax. Beam search keeps its
own loop (transformers' cache) with the same processors in the same order, as `process_logits`.
"""
from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from .kv_cache import SlotCache


# The settings, presets and flags live in the light generation_args (no torch), so scripts parse
# their flags before importing torch; re-exported here for the decoder's callers.
from .generation_args import (CHAT_PRESET, PRESETS, GenConfig, RowSettings, check_config,  # noqa: E402,F401
                              make_gen_config)


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
    if (cfg.frequency_penalty or cfg.presence_penalty) and gen is not None:
        counts = torch.zeros_like(logits).scatter_add_(1, gen, torch.ones_like(gen, dtype=logits.dtype))
        logits = logits - cfg.frequency_penalty * counts - cfg.presence_penalty * (counts > 0)
    banned = banned_ngram_mask(gen, cfg.no_repeat_ngram_size, logits.shape[-1]) if gen is not None else None
    if banned is not None:
        logits = logits.masked_fill(banned, float("-inf"))
    if step < cfg.min_new_tokens:
        logits[:, eos_id] = float("-inf")
    return logits


def _per_row(n: int, *settings) -> list[list]:
    """Each setting as a list of n values: a number is every row's, a sequence has one per row."""
    return [list(x) if isinstance(x, (list, tuple)) else [x] * n for x in settings]


def sampling_filter(logits, temperature, top_k, top_p):
    """Temperature, then top-k, then top-p; each a number, or a sequence with one per row."""
    n, V = logits.shape
    temps, ks, ps = _per_row(n, temperature, top_k, top_p)
    t = torch.tensor(temps, dtype=logits.dtype, device=logits.device)[:, None]
    logits = logits / t
    ks = [k if 0 < k < V else 0 for k in ks]
    if any(ks):
        k = torch.tensor(ks, device=logits.device)[:, None]
        kth = logits.topk(max(ks), -1).values.gather(1, (k - 1).clamp(min=0))
        kth = kth.masked_fill(k == 0, float("-inf"))
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if any(p < 1.0 for p in ps):
        p = torch.tensor(ps, dtype=logits.dtype, device=logits.device)[:, None]
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens before it already reach top_p (the first one always stays)
        drop = (probs.cumsum(-1) - probs >= p) & (p < 1.0)
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def sample(logits, temperature, top_k, top_p, gens: list[torch.Generator]) -> torch.Tensor:
    """sampling_filter then _draw, one token per row. When every row has a top-k and no top-p,
    only the k kept tokens enter the draw (in token order, as in the full-vocabulary CDF): the
    same distribution without the full-vocabulary masking, softmax and cumsum every step."""
    n, V = logits.shape
    temps, ks, ps = _per_row(n, temperature, top_k, top_p)
    K = max(ks)
    if not all(0 < k < V - 1 for k in ks) or any(p < 1.0 for p in ps):
        return _draw(sampling_filter(logits, temperature, top_k, top_p), gens)
    x = logits / torch.tensor(temps, dtype=logits.dtype, device=logits.device)[:, None]
    vals, idx = x.topk(K + 1, -1)  # one more: a tie at the k-th value keeps every tied token
    k = torch.tensor(ks, device=logits.device)[:, None]
    kth = vals.gather(1, k - 1)
    if bool((vals.gather(1, k) == kth).any()):
        return _draw(sampling_filter(logits, temperature, top_k, top_p), gens)
    vals, idx = vals[:, :K], idx[:, :K]
    vals = vals.masked_fill(vals < kth, float("-inf"))  # rows with a smaller k than the batch's largest
    idx, order = idx.sort(-1)
    tok = _draw(vals.gather(1, order), gens)
    return idx.gather(1, tok[:, None]).squeeze(1)


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
# the decoding loop: rows join and leave between steps


@dataclass
class StepEvent:
    row: int                       # the handle Decoder.add returned
    token: int                     # the new token (EOS when the row ended with EOS)
    logprob: float | None          # log P(token) under the unprocessed distribution, when asked
    top_logprobs: list[tuple[int, float]] | None
    finished: str | None           # None while running; "stop" (EOS) or "length"


class _Row:
    """A live row's settings and what its processors need to remember."""

    def __init__(self, handle: int, context: list[int], s: RowSettings):
        self.handle, self.context, self.s = handle, context, s
        self.n_gen = 0
        self.gen = None
        if s.do_sample:
            self.gen = torch.Generator()
            self.gen.manual_seed(s.seed if s.seed is not None else self.gen.seed())
        self.ngrams: dict[tuple, set] | None = {} if s.no_repeat_ngram_size > 0 else None
        self.reply: list[int] = []

    def banned(self) -> set | None:
        """Tokens that would repeat an n-gram of the reply (no_repeat_ngram_size)."""
        n = self.s.no_repeat_ngram_size
        if self.ngrams is None or len(self.reply) < n - 1:
            return None
        return self.ngrams.get(tuple(self.reply[len(self.reply) - n + 1:]))

    def push(self, tok: int) -> None:
        self.reply.append(tok)
        self.n_gen += 1
        n = self.s.no_repeat_ngram_size
        if self.ngrams is not None and len(self.reply) >= n:
            self.ngrams.setdefault(tuple(self.reply[len(self.reply) - n:-1]), set()).add(tok)


class Decoder:
    """Iteration-level batching over one model: `add` rows at any time (they join at the next
    `step`), `cancel` them, and `step` to get one token for every live row. Each row has its own
    settings (RowSettings); a seeded sampled row draws the same tokens whatever rows share its
    batch. Processor order, on the next-token logits of each row:
      1. logit_bias is added; 2. repetition penalty on tokens of the context or the reply (EOS
      exempt); 3. frequency and presence penalties on tokens of the reply; 4. no_repeat_ngram_size
      bans; 5. EOS banned below min_new_tokens; then greedy takes the argmax, sampling applies
      temperature, top-k, top-p and draws.
    `step` runs on one thread; `add` and `cancel` may come from others (they take effect at the
    next step)."""

    def __init__(self, model, eos_id: int, vocab_limit: int | None = None, device=None):
        self.model, self.eos = model, eos_id
        self.vocab = model.config.vocab_size
        self.vocab_limit = min(vocab_limit or self.vocab, self.vocab)
        self.n_positions = model.config.n_positions
        self.cache = SlotCache(model)
        self.device = torch.device(device) if device is not None else self.cache.device
        self.rows: list[_Row] = []           # slot i of the cache = rows[i]
        self.pending: list[_Row] = []
        self.cancelled: set[int] = set()
        self.tok = self.pos = None           # per live row: the token to feed next, its position - 1
        self.seen = self.counts = None       # [rows, vocab]: context+reply tokens, reply token counts
        self._next = 0
        self._lock = threading.Lock()        # guards pending, cancelled and _next
        self._plan = None                    # per-row setting tensors, rebuilt when rows change

    def __len__(self) -> int:
        return sum(r.handle not in self.cancelled for r in self.rows + self.pending)

    def add(self, context: list[int], settings: RowSettings) -> int:
        if not context:
            raise ValueError("every context needs at least one token (an empty context is [EOS])")
        if len(context) > self.n_positions - 1:
            raise ValueError(f"context of {len(context)} tokens leaves no room in n_positions={self.n_positions}; "
                             "truncate it first (chat.fit_context)")
        settings.check(self.vocab)
        with self._lock:
            row = _Row(self._next, list(context), settings)
            self._next += 1
            self.pending.append(row)
        return row.handle

    def cancel(self, row: int) -> None:
        with self._lock:
            if any(r.handle == row for r in self.rows + self.pending):
                self.cancelled.add(row)

    @torch.no_grad()
    def step(self) -> list[StepEvent]:
        with self._lock:
            new, cancelled = self.pending, self.cancelled
            self.pending, self.cancelled = [], set()
        self._drop([i for i, r in enumerate(self.rows) if r.handle in cancelled])
        new = [r for r in new if r.handle not in cancelled]
        if not self.rows and not new:
            return []
        live = self.rows + new
        steps = max(r.s.max_new_tokens - r.n_gen for r in live) + 1
        self.cache.reserve(len(new), max((len(r.context) for r in new), default=0), steps)
        parts = []
        if self.rows:
            parts.append(self.cache.decode(self.tok, self.pos, self.cache.first_column()))
        if new:
            parts.append(self.cache.prefill([r.context for r in new]))
            self._join(new)
        cat = lambda xs: xs[0] if len(xs) == 1 else torch.cat(xs)  # noqa: E731
        logits = cat([p.logits for p in parts])
        err = None
        if any(p.err is not None for p in parts):
            err = cat([p.err if p.err is not None else p.logits.new_zeros(len(p.logits)) for p in parts])
        tok = self._choose(logits, err)
        if tok is None:  # a greedy choice too close to call with the fast head: the model's own logits
            logits = cat([p.exact() for p in parts])
            tok = self._choose(logits, None)
        return self._advance(logits, tok)

    # -- bookkeeping ----------------------------------------------------------------------------

    def _join(self, new: list[_Row]) -> None:
        dev = self.device
        tok = torch.zeros(len(new), dtype=torch.long, device=dev)
        pos = torch.tensor([len(r.context) - 1 for r in new], device=dev)  # the last fed token's
        self.tok = tok if self.tok is None else torch.cat([self.tok, tok])
        self.pos = pos if self.pos is None else torch.cat([self.pos, pos])
        if self.seen is None and any(r.s.repetition_penalty != 1.0 for r in new):
            self.seen = torch.zeros((len(self.rows), self.vocab), dtype=torch.bool, device=dev)
        if self.counts is None and any(r.s.frequency_penalty or r.s.presence_penalty for r in new):
            self.counts = torch.zeros((len(self.rows), self.vocab), device=dev)
        if self.seen is not None:
            seen = torch.zeros((len(new), self.vocab), dtype=torch.bool, device=dev)
            for i, r in enumerate(new):
                seen[i, torch.tensor(r.context, device=dev)] = True
            seen[:, self.eos] = False  # EOS separates every turn: penalising it would stop replies ending
            self.seen = torch.cat([self.seen, seen])
        if self.counts is not None:
            self.counts = torch.cat([self.counts, self.counts.new_zeros((len(new), self.vocab))])
        self.rows += new
        self._plan = None

    def _drop(self, slots: list[int]) -> None:
        """Remove rows (by slot); the last row moves into each hole so slots stay dense."""
        if not slots:
            return
        order = list(range(len(self.rows)))
        for i in sorted(slots, reverse=True):
            last = len(order) - 1
            if i != last:
                order[i] = order[last]
                self.rows[i] = self.rows[last]
                self.cache.move(last, i)
            order.pop()
            self.rows.pop()
            self.cache.drop_last()
        if not self.rows:
            self.tok = self.pos = self.seen = self.counts = None
        else:
            keep = torch.tensor(order, device=self.device)
            self.tok, self.pos = self.tok[keep], self.pos[keep]
            self.seen = self.seen[keep] if self.seen is not None else None
            self.counts = self.counts[keep] if self.counts is not None else None
        self._plan = None

    def _settings(self) -> dict:
        """Tensors of the live rows' settings (cached until rows join or leave)."""
        if self._plan is None:
            rows, dev = self.rows, self.device
            col = lambda name: torch.tensor([[getattr(r.s, name)] for r in rows], device=dev)  # noqa: E731
            self._plan = dict(
                rep=col("repetition_penalty") if any(r.s.repetition_penalty != 1.0 for r in rows) else None,
                freq=col("frequency_penalty") if any(r.s.frequency_penalty for r in rows) else None,
                pres=col("presence_penalty") if any(r.s.presence_penalty for r in rows) else None,
                bias=[(i, torch.tensor(list(r.s.logit_bias), device=dev),
                       torch.tensor(list(r.s.logit_bias.values()), device=dev))
                      for i, r in enumerate(rows) if r.s.logit_bias],
                sample=[i for i, r in enumerate(rows) if r.s.do_sample],
                logprobs=any(r.s.logprobs is not None for r in rows))
            p = self._plan
            if p["sample"]:
                p["sample_idx"] = torch.tensor(p["sample"], device=dev)
        return self._plan

    def _choose(self, logits: torch.Tensor, err: torch.Tensor | None) -> torch.Tensor | None:
        """The processors (class docstring), then argmax or a draw per row. `err` bounds the
        error of `logits` per row (None: exact); None is returned, before any draw, when a greedy
        row's top two are closer than that error allows to call."""
        plan, rows, x = self._settings(), self.rows, logits

        def own():  # modify a copy: `logits` stays raw for the log-probabilities
            nonlocal x
            if x is logits:
                x = x.clone()
        if self.vocab_limit < x.shape[-1]:
            own()
            x[:, self.vocab_limit:] = float("-inf")
        for i, ids, vals in plan["bias"]:
            own()
            x[i, ids] += vals
        if plan["rep"] is not None:
            p = plan["rep"]
            x = torch.where(self.seen, torch.where(x > 0, x / p, x * p), x)
        if plan["freq"] is not None or plan["pres"] is not None:
            c = self.counts
            if plan["freq"] is not None:
                x = x - plan["freq"] * c
            if plan["pres"] is not None:
                x = x - plan["pres"] * (c > 0)
        ban_r, ban_t = [], []
        for i, r in enumerate(rows):
            b = r.banned()
            if b:
                ban_r += [i] * len(b)
                ban_t += b
            if r.n_gen < r.s.min_new_tokens:
                ban_r.append(i)
                ban_t.append(self.eos)
        if ban_r:
            own()
            x[ban_r, ban_t] = float("-inf")
        if err is not None and self._too_close(x, err, plan):
            return None
        if len(plan["sample"]) == len(rows):
            return sample(x, *self._sampling(rows), [r.gen for r in rows])
        tok = x.argmax(-1)
        if plan["sample"]:
            srows = [rows[i] for i in plan["sample"]]
            idx = plan["sample_idx"]
            tok[idx] = sample(x[idx], *self._sampling(srows), [r.gen for r in srows])
        return tok

    def _too_close(self, x, err, plan) -> bool:
        greedy = [i for i, r in enumerate(self.rows) if not r.s.do_sample]
        if not greedy:
            return False
        top = x[greedy].topk(2, -1).values
        slope = err.new_tensor([max(r.s.repetition_penalty, 1 / r.s.repetition_penalty) for r in self.rows])
        # the processors scale an error by at most the repetition penalty; add a few ulps of rounding
        room = 2 * (err * slope)[greedy] + 4 * top[:, 0].abs() * 2.0 ** -23
        return bool((top[:, 0] - top[:, 1] <= room).any())

    @staticmethod
    def _sampling(rows):
        return [r.s.temperature for r in rows], [r.s.top_k for r in rows], [r.s.top_p for r in rows]

    def _advance(self, logits: torch.Tensor, tok: torch.Tensor) -> list[StepEvent]:
        """Events for the chosen tokens; finished rows leave."""
        plan, rows = self._settings(), self.rows
        lp = None
        if plan["logprobs"]:
            lse = logits.logsumexp(-1)
            lp = (logits.gather(1, tok[:, None])[:, 0] - lse).tolist()
        toks = tok.tolist()
        pos = self.pos.tolist()
        events, done = [], []
        for i, (r, t) in enumerate(zip(rows, toks)):
            r.push(t)
            finished = None
            if t == self.eos:
                finished = "stop"
            elif r.n_gen >= r.s.max_new_tokens or pos[i] + 2 >= self.n_positions:  # t sits at pos + 1
                finished = "length"
            top = None
            if r.s.logprobs:
                v, ids = logits[i].topk(r.s.logprobs)
                top = list(zip(ids.tolist(), (v - lse[i]).tolist()))
            events.append(StepEvent(r.handle, t, lp[i] if lp is not None and r.s.logprobs is not None else None,
                                    top, finished))
            if finished:
                done.append(i)
        idx = torch.arange(len(rows), device=self.device)
        if self.seen is not None:
            self.seen[idx, tok] = True
            self.seen[:, self.eos] = False
        if self.counts is not None:
            self.counts[idx, tok] += 1
        self.tok, self.pos = tok, self.pos + 1
        self._drop(done)
        return events


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
    if not contexts:
        raise ValueError("every context needs at least one token (an empty context is [EOS])")
    n_ret = cfg.num_return_sequences
    indices = list(range(len(contexts))) if indices is None else indices
    dec = Decoder(model, eos_id, vocab_limit)
    handles = [dec.add(c, RowSettings.from_config(cfg, seed=row_seed(cfg.seed, indices[b], j), logprobs=0))
               for b, c in enumerate(contexts) for j in range(n_ret)]
    hyps = {h: {"ids": [], "logprob": 0.0, "score": 0.0, "finished": False} for h in handles}
    while len(dec):
        for e in dec.step():
            h = hyps[e.row]
            h["logprob"] += e.logprob
            if e.finished == "stop":
                h["finished"] = True
            else:
                h["ids"].append(e.token)
    for h in hyps.values():
        h["score"] = h["logprob"]
    out = [hyps[h] for h in handles]
    return [sorted(out[b * n_ret:(b + 1) * n_ret], key=lambda h: -h["score"]) if n_ret > 1
            else out[b * n_ret:(b + 1) * n_ret] for b in range(len(contexts))]


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
