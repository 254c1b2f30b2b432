"""The output head's forms (lsp_model.kv_cache._HEAD_FORMS) against nn.Linear: logits = h @ W.T
for the tied [vocab, width] embedding at several row counts, interleaved rounds in one process,
GFLOP/s median [min-max], the per-round ratio to nn.Linear, whether each form gives nn.Linear's
bits, and the fastest form by median (`_head` itself keeps the form with the shortest of its
own first-use trials). This shows why the decoder must time them: the order changes with rows
and threads.

    python benchmarks/bench_head.py                     # 117M's head, 1 thread
    python benchmarks/bench_head.py --threads 2 --rows 1 32
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from common import interleaved, load, machine, ratio_rounds, summary, write_json  # noqa: E402
from lsp_model.kv_cache import _HEAD_FORMS, _plain  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(a.vocab, a.width, generator=g) * 0.02
    wt = w.t().contiguous()
    print(f"head {a.vocab}x{a.width}, {a.rounds} rounds; {machine()}; before: {load()}")
    rows = []
    for n in a.rows:
        h = torch.randn(n, a.width, generator=g)
        want = _plain(h, w, wt)
        reps = max(1, 32 // n)  # enough work per timing at small n
        fns = {f.__name__: (lambda f=f: [f(h, w, wt) for _ in range(reps)]) for f in _HEAD_FORMS}
        interleaved(fns, 1)
        t = interleaved(fns, a.rounds)
        flop = 2 * n * a.vocab * a.width * reps
        best = min(fns, key=lambda k: summary(t[k])[0])
        for f in _HEAD_FORMS:
            k = f.__name__
            gf = summary([flop / x / 1e9 for x in t[k]])
            r = summary(ratio_rounds(t["_plain"], t[k]))
            same = torch.equal(f(h, w, wt), want)
            print(f"  rows {n:3d} {k:12} {gf[0]:6.1f} GFLOP/s [{gf[1]:.1f}-{gf[2]:.1f}]  x{r[0]:.2f} of nn.Linear "
                  f"[{r[1]:.2f}-{r[2]:.2f}]  same bits: {same}{'  <- fastest' if k == best else ''}")
            rows.append(dict(rows=n, form=k, gflops=gf[0], lo=gf[1], hi=gf[2], ratio_vs_linear=r[0],
                             ratio_lo=r[1], ratio_hi=r[2], same_bits=same, fastest=k == best))
    print(f"  after: {load()}")
    write_json(a.json, "head", rows)


if __name__ == "__main__":
    main()
