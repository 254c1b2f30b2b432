"""Optimizer update time at 117M: the original's Adam (gpt2_training.optim.Adam, per-tensor
clipping, no bias correction) on torch's fused kernel and on its foreach fallback, against
torch AdamW(fused=True) with and without global clip_grad_norm_ (what a plain loop runs).
Interleaved rounds in one process; prints median [min-max] seconds and per-round ratios.

    python benchmarks/bench_optim.py [--size 117M] [--rounds 7] [--json out.json]
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
from gpt2_training import optim  # noqa: E402
from lsp_model.model import build_model, load_config  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="117M")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = build_model(load_config(REPO / "configs" / a.size))
    g = torch.Generator().manual_seed(0)
    # One parameter set and one gradient set for all (memory: 117M x 4 variants would not fit a
    # small machine); the gradients are restored before each timed step (clipping scales them).
    ps = [p.detach().requires_grad_() for p in model.parameters()]
    master = [torch.randn(p.shape, generator=g) * 1e-3 for p in ps]
    for p, m in zip(ps, master):
        p.grad = m.clone()
    lsp, adamw = optim.Adam(ps, lr=1e-5), torch.optim.AdamW(ps, lr=1e-5, fused=True)  # adamw: one state, two rows
    fused_devices = optim._fused_devices

    def step(k):
        def f():
            if k == "lsp foreach":
                optim._fused_devices = lambda: ()
            try:
                if k == "adamw fused+clip":
                    torch.nn.utils.clip_grad_norm_(ps, 1.0, foreach=True)
                (lsp if k.startswith("lsp") else adamw).step()
            finally:
                optim._fused_devices = fused_devices
        return f

    def restore():
        torch._foreach_copy_([p.grad for p in ps], master)

    names = ("lsp fused", "lsp foreach", "adamw fused+clip", "adamw fused")
    steps = {k: step(k) for k in names}
    for f in steps.values():  # allocates the optimizer states
        restore()
        f()
    t = {k: [] for k in names}
    for _ in range(a.rounds):
        for k in names:
            restore()
            t[k] += interleaved({k: steps[k]}, 1)[k]
    n = sum(p.numel() for p in ps)
    print(f"optimizer update, {a.size} ({n / 1e6:.0f}M params), {a.rounds} rounds; {machine()}; {load()}")
    rows = []
    for k, xs in t.items():
        med, lo, hi = summary(xs)
        r = summary(ratio_rounds(xs, t["adamw fused+clip"]))
        r2 = summary(ratio_rounds(xs, t["adamw fused"]))
        print(f"  {k:18} {med:6.3f} s [{lo:.3f}-{hi:.3f}]   x{r[0]:.2f} the time of adamw fused+clip "
              f"[{r[1]:.2f}-{r[2]:.2f}], x{r2[0]:.2f} of adamw fused [{r2[1]:.2f}-{r2[2]:.2f}]")
        rows.append(dict(name=k, seconds=med, lo=lo, hi=hi, ratio_vs_adamw_clip=r[0], ratio_vs_adamw=r2[0],
                         ratio_lo=r[1], ratio_hi=r[2]))
    write_json(a.json, "optim", rows)


if __name__ == "__main__":
    main()
