"""A preallocated key/value cache for a changing batch of rows, and GPT-2's forward over it.

transformers' DynamicCache grows by `torch.cat` every step (a copy of the whole cache per token)
and cannot take a row that joins mid-flight. Here every row of the batch owns a slot (slots
0..n-1, kept dense: a row that leaves is replaced by the last one) in one buffer
[slots, layer, k/v, head, column, head_dim]. All rows write their new token at the same column
`t`, so a step is one batched forward over views of the buffer, with no copy. A row's tokens sit
right-aligned before `t` (left padding, masked), exactly the layout of a left-padded batch, so a
batch that starts together runs the same attention as transformers' `generate`. A row that
joins later is written right-aligned at `t` too; when its context is longer than `t`, `t` jumps
ahead and the older rows keep a masked gap. When the columns run out the cache is rebuilt with
each row's tokens right-aligned and the gaps squeezed out (rare: space for every row's remaining
tokens is reserved when it joins).

The forward runs the model's own GPT-2 weights through transformers' kernels in transformers'
order (gpt2_blocks) and builds the attention mask as transformers' sdpa path does (none when
nothing is padded), so the logits are those of `model(...)` with transformers' cache (bit for
bit, or where the head's fastest form has other bits, within a bound the Decoder checks: see
`_head`).
"""
from __future__ import annotations

import functools
import math
import time
import weakref
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from transformers.activations import NewGELUActivation
from transformers.pytorch_utils import Conv1D


def check_gpt2(model) -> None:
    t = getattr(model, "transformer", None)
    if t is None or not hasattr(t, "h") or not hasattr(model, "lm_head"):
        raise TypeError(f"the decoder runs GPT-2 models (GPT2LMHeadModel), not {type(model).__name__}")


class Block(NamedTuple):
    """One GPT-2 block as calls on tensors (gpt2_blocks)."""
    ln_1: Callable
    c_attn: Callable
    c_proj: Callable
    ln_2: Callable
    mlp: Callable
    head_dim: int
    scaling: float


def gpt2_blocks(model) -> list[Block]:
    """The model's blocks with transformers' Conv1D and LayerNorm forwards as direct calls of the
    same kernels on the same tensors (so the same bits); a module of any other type (a peft
    wrapper, a subclass) stays the module. At batch 1 a step is the weights streaming from memory
    plus a few hundred small calls, of which modules' dispatch was a visible share."""
    return [Block(_norm(b.ln_1), _conv(b.attn.c_attn), _conv(b.attn.c_proj), _norm(b.ln_2), _mlp(b.mlp),
                  b.attn.head_dim, b.attn.scaling) for b in model.transformer.h]


def _conv(m):
    if type(m) is not Conv1D:
        return m
    w, b = m.weight, m.bias
    return lambda x: torch.addmm(b, x.view(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[1])


def _norm(m):
    if type(m) is not torch.nn.LayerNorm:
        return m
    return functools.partial(F.layer_norm, normalized_shape=m.normalized_shape, weight=m.weight, bias=m.bias,
                             eps=m.eps)


def gpt2_logits(model, ids, pos, store, attn_mask, blocks: list[Block] | None = None) -> "Logits":
    """Next-token logits (see Logits) after `ids` [n, q] at positions `pos` [n, q] (see gpt2_hidden)."""
    x = gpt2_hidden(model, ids, pos, store, attn_mask, blocks=blocks)
    return _head(model.lm_head, model.transformer.ln_f(x[:, -1:])[:, 0])


def gpt2_hidden(model, ids, pos, store, attn_mask, pick: torch.Tensor | None = None,
                blocks: list[Block] | None = None) -> torch.Tensor:
    """The last block's output [n, q, width] (before ln_f) for `ids` [n, q] at positions `pos`.
    `store(layer, k, v)` keeps this call's keys/values [n, head, q, dim] and returns the ones to
    attend to; `attn_mask` is a bool [n, 1, q, kv] mask, or None for plain causal attention.
    `pick` [n]: only the output at column pick[r] of each row is wanted ([n, 1, width]); the last
    block still stores every key/value but runs its attention output and MLP at that column only.
    `blocks`: gpt2_blocks(model), made once by a caller that runs many steps."""
    tr = model.transformer
    blocks = gpt2_blocks(model) if blocks is None else blocks
    x = tr.wte(ids) + tr.wpe(pos)
    n, q, width = x.shape
    causal = q > 1 and attn_mask is None
    for i, b in enumerate(blocks):
        # the split of transformers' attention (views [n, head, q, dim] of c_attn's output) in two calls
        qs, ks, vs = b.c_attn(b.ln_1(x)).view(n, q, 3, -1, b.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        ks, vs = store(i, ks, vs)
        if pick is not None and i == len(blocks) - 1:
            at = torch.arange(n, device=x.device)
            qs, x, q, causal = qs[at, :, pick][:, :, None], x[at, pick][:, None], 1, False
            kv = ks.shape[2]  # the picked column's row of the causal or given mask
            attn_mask = (torch.arange(kv, device=x.device) <= pick[:, None] + kv - ids.shape[1])[:, None, None] \
                if attn_mask is None else attn_mask[at, :, pick][:, :, None]
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=attn_mask, scale=b.scaling, is_causal=causal)
        x = b.c_proj(o.transpose(1, 2).reshape(n, q, width)) + x
        x = x + b.mlp(b.ln_2(x))
    return x


class Logits:
    """Next-token logits [n, vocab] (fp32). `err` is None when they are bit for bit the model's;
    else a per-row bound on |logits - model's logits| (the fast head below), and `exact()`
    computes the model's own."""

    def __init__(self, logits, h=None, err=None, lm_head=None, pick=None):
        self.logits, self.h, self.err, self.lm_head, self.pick = logits, h, err, lm_head, pick

    def exact(self) -> torch.Tensor:
        if self.err is None:
            return self.logits
        out = self.lm_head(self.h).float()
        return out if self.pick is None else out[self.pick]

    def select(self, pick: torch.Tensor) -> "Logits":
        err = None if self.err is None else self.err[pick]
        return Logits(self.logits[pick], self.h, err, self.lm_head, pick)


# The head, x @ W.T over the tied [vocab, width] embedding, is a decode step's largest product.
# Which way MKL runs it fastest depends on the rows and the threads (benchmarks/bench_head.py): one
# product (nn.Linear), W's row blocks one at a time, W's row blocks @ x.T, or x against a
# contiguous transposed copy of W. The first calls in each (power-of-two rows, threads) bucket
# run the forms in turn, each _HEAD_TRIALS times, timed; later calls use the one with the
# shortest time (the least disturbed by a shared machine). The first call of a form at an exact
# shape checks its bits against nn.Linear. Where they differ, the logits come with a rigorous
# bound on the difference (two fp32 dot products of length d each within gamma_d * sum|h_i w_i|,
# at most gamma_d * |h| * the largest row norm of W), and the Decoder recomputes the model's own
# logits when a greedy choice is closer than that.
_HEAD_BLOCK = 1024  # rows of W per product in the blocked forms
_HEAD_TRIALS = 3


def _plain(h, w, wt):
    return F.linear(h, w)


def _blocked(h, w, wt):
    return torch.cat([F.linear(h, b) for b in w.split(_HEAD_BLOCK)], 1)


def _blocked_t(h, w, wt):
    out, ht = h.new_empty((w.shape[0], h.shape[0])), h.t()
    for b, o in zip(w.split(_HEAD_BLOCK), out.split(_HEAD_BLOCK)):
        torch.mm(b, ht, out=o)
    return out.t().contiguous()


def _transposed(h, w, wt):
    return h @ wt


_HEAD_FORMS = (_plain, _blocked, _blocked_t, _transposed)
_HEAD_COPY: "weakref.WeakKeyDictionary[torch.nn.Module, tuple]" = weakref.WeakKeyDictionary()  # head -> W.T, max |W_r|
_HEAD_TRIED: dict[tuple, dict] = {}  # (vocab, width, row bucket, threads) -> {form: [seconds]}
_HEAD_BEST: dict[tuple, object] = {}   # the same buckets -> the form kept once all were tried
_HEAD_SAME: dict[tuple, bool] = {}   # (form, vocab, width, rows, threads) -> nn.Linear's bits?
_U32 = 2.0 ** -24  # fp32 unit roundoff


def _head_form(bucket):
    """(the form to run, its timings to add to while the bucket is still trying forms)."""
    best = _HEAD_BEST.get(bucket)
    if best is not None:
        return best, None
    tried = _HEAD_TRIED.setdefault(bucket, {form: [] for form in _HEAD_FORMS})
    form = min(tried, key=lambda f: len(tried[f]))  # round robin
    if len(tried[form]) < _HEAD_TRIALS:
        return form, tried[form]
    best = _HEAD_BEST[bucket] = min(tried, key=lambda f: min(tried[f]))
    return best, None


def _head(lm_head, h: torch.Tensor) -> Logits:
    w = lm_head.weight
    if w.device.type != "cpu" or w.dtype != torch.float32 or lm_head.bias is not None:
        return Logits(lm_head(h).float())
    w = w.detach()
    key = (w._version, w.data_ptr())
    got = _HEAD_COPY.get(lm_head)
    if got is None or got[0] != key:  # new, or the weight changed (training, loading)
        got = (key, w.t().contiguous(), w.norm(dim=1).max().item())
        _HEAD_COPY[lm_head] = got
    rows, threads = h.shape[0], torch.get_num_threads()
    form, tried = _head_form((*w.shape, 1 << (rows - 1).bit_length(), threads))
    t0 = time.perf_counter()
    fast = form(h, w, got[1])
    if tried is not None:
        tried.append(time.perf_counter() - t0)
    shape = (form, *w.shape, rows, threads)
    same = _HEAD_SAME.get(shape)
    if same is None:
        same = _HEAD_SAME[shape] = form is _plain or torch.equal(fast, F.linear(h, w))
    if same:
        return Logits(fast)
    d = w.shape[1]
    gamma = d * _U32 / (1 - d * _U32)
    return Logits(fast, h, 2 * gamma * h.norm(dim=-1) * got[2], lm_head)  # sum|h_i w_i| <= |h| |w|


def _mlp(mlp):
    """GPT-2's MLP; its gelu_new in place (the same operations as transformers' NewGELUActivation,
    so the same bits, without its five temporaries)."""
    c_fc, c_proj, act = _conv(mlp.c_fc), _conv(mlp.c_proj), mlp.act
    if isinstance(act, NewGELUActivation):
        act = _gelu_new
    return lambda x: mlp.dropout(c_proj(act(c_fc(x))))


def _gelu_new(h):
    t = torch.pow(h, 3.0).mul_(0.044715).add_(h).mul_(math.sqrt(2.0 / math.pi)).tanh_().add_(1.0)
    return (h * 0.5).mul_(t)


class SlotCache:
    """Keys/values of rows 0..n-1 (see the module docstring); `valid` marks real tokens."""

    def __init__(self, model):
        check_gpt2(model)
        c = model.config
        p = next(model.parameters())
        self.model, self.device, self.dtype = model, p.device, p.dtype
        self.blocks = gpt2_blocks(model)
        self.shape = (c.n_layer, 2, c.n_head, c.n_embd // c.n_head)
        self.kv = self.valid = None
        self.n = self.t = 0

    @property
    def columns(self) -> int:
        return 0 if self.kv is None else self.kv.shape[4]

    def reserve(self, new_rows: int, context: int, steps: int) -> None:
        """Room for `new_rows` more rows with up to `context` tokens each, and `steps` more
        columns after them."""
        rows = self.n + new_rows
        cap_rows = 0 if self.kv is None else self.kv.shape[0]
        if rows <= cap_rows and max(self.t, context) + steps <= self.columns:
            return
        if self.n == 0:  # exact sizes: generate() knows every row's length up front
            self._rebuild(rows, context + steps)
            return
        width = int(self.valid[:self.n, :self.t].sum(1).max())
        need = max(width, context) + steps
        self._rebuild(max(rows, cap_rows if rows <= cap_rows else 2 * cap_rows), need + need // 2)

    def _rebuild(self, rows: int, columns: int) -> None:
        """New buffers; each live row's real tokens are copied right-aligned at column `width`
        (the most real tokens any row has), which becomes `t`."""
        kv = torch.zeros((rows, *self.shape[:3], columns, self.shape[3]), dtype=self.dtype, device=self.device)
        valid = torch.zeros((rows, columns), dtype=torch.bool, device=self.device)
        width = 0
        if self.n:
            cols = [v.nonzero().flatten() for v in self.valid[:self.n, :self.t]]
            width = max(len(c) for c in cols)
            for r, c in enumerate(cols):
                kv[r, :, :, :, width - len(c):width] = self.kv[r, :, :, :, :].index_select(3, c)
                valid[r, width - len(c):width] = True
        self.kv, self.valid, self.t = kv, valid, width

    def prefill(self, contexts: list[list[int]]) -> Logits:
        """Add rows n.. for `contexts` (identical contexts run once); their next-token logits.
        Needs `reserve` first."""
        uniq: dict[tuple, int] = {}
        src = [uniq.setdefault(tuple(c), len(uniq)) for c in contexts]
        rows = [list(c) for c in uniq]
        L = max(len(c) for c in rows)
        ids = torch.zeros((len(rows), L), dtype=torch.long)
        valid = torch.zeros((len(rows), L), dtype=torch.bool)
        for i, c in enumerate(rows):
            ids[i, L - len(c):] = torch.tensor(c)
            valid[i, L - len(c):] = True
        ids, valid = ids.to(self.device), valid.to(self.device)
        pos = (valid.long().cumsum(-1) - 1).clamp(min=0)
        mask = None
        if not bool(valid.all()):
            mask = torch.ones((L, L), dtype=torch.bool, device=self.device).tril() & valid[:, None, None, :]
        self.t = max(self.t, L)
        s0, s1, c0 = self.n, self.n + len(contexts), self.t - L
        pick = None if len(rows) == len(contexts) else torch.tensor(src, device=self.device)

        def store(layer, k, v):
            for j, x in enumerate((k, v)):
                self.kv[s0:s1, layer, j, :, c0:self.t] = x if pick is None else x[pick]
            return k, v

        logits = gpt2_logits(self.model, ids, pos, store, mask, self.blocks)
        self.valid[s0:s1, :] = False
        self.valid[s0:s1, c0:self.t] = valid if pick is None else valid[pick]
        self.n = s1
        return logits if pick is None else logits.select(pick)

    def decode(self, tok: torch.Tensor, pos: torch.Tensor, lo: int) -> Logits:
        """Feed one token per row (rows 0..n-1, positions `pos`), attending to columns lo..t;
        returns the next-token logits. Needs a free column (`reserve`)."""
        n, t = self.n, self.t
        self.valid[:n, t] = True
        seen = self.valid[:n, lo:t + 1]
        mask = None if bool(seen.all()) else seen[:, None, None, :]
        seen_kv = self.kv[:n, :, :, :, lo:t + 1].unbind(1)  # per layer [n, k/v, head, column, dim]

        def store(layer, k, v):
            ks, vs = seen_kv[layer].unbind(1)
            ks.narrow(2, t - lo, 1).copy_(k)
            vs.narrow(2, t - lo, 1).copy_(v)
            return ks, vs

        logits = gpt2_logits(self.model, tok[:, None], pos[:, None], store, mask, self.blocks)
        self.t = t + 1
        return logits

    def first_column(self) -> int:
        """The first column any live row uses (attention can start there)."""
        if not self.n:
            return self.t
        return int(self.valid[:self.n, :self.t + 1].any(0).long().argmax())

    def move(self, src: int, dst: int) -> None:
        self.kv[dst] = self.kv[src]
        self.valid[dst] = self.valid[src]

    def drop_last(self) -> None:
        self.n -= 1
        if self.n == 0:  # nothing live: give the memory back
            self.kv = self.valid = None
            self.t = 0
