"""Which precision trains faster here: a few timed updates of a model in fp32 and in bf16.

bf16 autocast is about 2x faster than fp32 on CPUs with bf16 matrix units (AVX512-BF16, AMX) and
several times slower on those without (every bf16 matmul is emulated), and the thread count and
the other work on the machine move the balance, so the demo measures instead of guessing:

    python -m gpt2_training.precision models/config.json --batch 8 --seq 128 --json out.json

First one of the model's matrix products is timed in both precisions (`matmul_ratio`): where bf16
is emulated it is GIVE_UP or more times slower, and fp32 is chosen without timing a bf16 update
(one took 44 s against fp32's 1 s for the demo's model on an AVX2 CPU; the probe takes a second).
Otherwise the updates are the loop's (LMLoss, the original's Adam, weights cast once per update)
on random tokens, interleaved fp32/bf16 for `--rounds` rounds after one warm-up each; the result
is the median seconds per update of each, and the faster one. bf16 must win by `MARGIN` to be
chosen: on a machine where the two are close the choice would otherwise flip between runs, and
the losses depend on it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

MARGIN = 1.10  # bf16 is chosen when fp32 takes at least this many times as long
GIVE_UP = 3.0  # a bf16 product or warm-up update this many times slower than fp32's: no rounds (see measure)


def matmul_ratio(config, batch: int, seq: int, reps: int = 3) -> float:
    """bf16 / fp32 time of the model's MLP product at one micro-batch's rows (each the best of
    `reps` after a warm-up; bf16 stops after its first timed call when that is already GIVE_UP
    times fp32's best, as where it is emulated)."""
    import torch
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch * seq, config.n_embd, generator=g)
    w = torch.randn(config.n_embd, 4 * config.n_embd, generator=g)

    def timed(a, b) -> float:
        t = time.perf_counter()
        a @ b
        return time.perf_counter() - t
    x @ w
    fp32 = min(timed(x, w) for _ in range(reps))
    xb, wb = x.bfloat16(), w.bfloat16()
    xb @ wb
    first = timed(xb, wb)
    if first > GIVE_UP * fp32:
        return first / fp32
    return min([first] + [timed(xb, wb) for _ in range(reps - 1)]) / fp32


def update_timer(config, batch: int, seq: int, precision: str, seed: int = 0):
    """A function that runs one training update in `precision` and returns its seconds."""
    import torch

    from lsp_model.model import build_model

    from .amp import UpdateCasts
    from .loss import LMLoss
    from .optim import build_optimizer, optimizer_step

    torch.manual_seed(seed)
    model = build_model(config)
    lm = LMLoss(model)
    opt = build_optimizer(model, "lsp", 1e-5, False, torch.device("cpu"))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, config.vocab_size, (batch, seq), generator=g)
    pos = torch.arange(seq).expand(batch, seq)
    labels = torch.randint(1, config.vocab_size, (batch, seq), generator=g)
    labels[:, : seq // 3] = -1  # the context is not trained on, as in prepro's features
    bf16 = precision == "bf16"
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def one() -> float:
        t = time.perf_counter()
        with UpdateCasts("cpu", bf16), amp():
            loss, _ = lm(ids, pos, None, labels)
        loss.backward()
        optimizer_step(opt, None)
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t
    return one


def measure(config, batch: int, seq: int, rounds: int = 3) -> dict:
    """{"fp32": median s/update, "bf16": ..., "rounds": n, "choice": "bf16" | "fp32",
    "matmul_ratio": bf16/fp32 of one product}. Where bf16's product (or its warm-up update)
    already takes `GIVE_UP` times fp32's (emulated bf16: no bf16 units), fewer things are timed:
    bf16 cannot win, and each of its updates would cost the demo seconds. After a slow product no
    update runs ("fp32" and "bf16" are None); after a slow warm-up update, no rounds (rounds 0,
    the warm-up times)."""
    ratio = matmul_ratio(config, batch, seq)
    if ratio > GIVE_UP:
        return {"fp32": None, "bf16": None, "rounds": 0, "choice": "fp32", "matmul_ratio": ratio}
    timers = {p: update_timer(config, batch, seq, p) for p in ("fp32", "bf16")}
    warm = {p: f() for p, f in timers.items()}  # warm-up: optimizer state, allocator, oneDNN kernels
    if warm["bf16"] > GIVE_UP * warm["fp32"]:
        return {"fp32": warm["fp32"], "bf16": warm["bf16"], "rounds": 0, "choice": "fp32", "matmul_ratio": ratio}
    times = {p: [] for p in timers}
    for _ in range(rounds):
        for p, f in timers.items():
            times[p].append(f())
    med = {p: statistics.median(v) for p, v in times.items()}
    choice = "bf16" if med["fp32"] >= MARGIN * med["bf16"] else "fp32"
    return {"fp32": med["fp32"], "bf16": med["bf16"], "rounds": rounds, "choice": choice, "matmul_ratio": ratio}


def describe(res: dict) -> str:
    """What was measured, in words (the demo's precision line)."""
    if res["fp32"] is None:
        return (f"a bf16 matrix product took {res['matmul_ratio']:.0f}x fp32's (bf16 is emulated here), "
                "so no bf16 update was timed")
    how = f"median of {res['rounds']}" if res["rounds"] else "one update each: bf16 is emulated here"
    return f"an update took {res['fp32']:.2f} s in fp32 and {res['bf16']:.2f} s in bf16 ({how})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gpt2_training.precision", description=__doc__.splitlines()[0])
    ap.add_argument("config", help="the model's config.json (or its folder)")
    ap.add_argument("--batch", type=int, default=8, help="rows per micro-batch")
    ap.add_argument("--seq", type=int, default=128, help="tokens per row")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="write the result here too")
    a = ap.parse_args(argv)
    from lsp_model.model import load_config
    try:
        config = load_config(a.config)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {a.config}: {e}", file=sys.stderr)
        return 1
    res = measure(config, a.batch, a.seq, a.rounds)
    print(f"{res['choice']}: {describe(res)}")
    if a.json:
        from lsp_io.atomic import atomic_file
        with atomic_file(a.json, "w") as f:
            f.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
