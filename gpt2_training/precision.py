"""Which precision trains faster here: a few timed updates of a model in fp32 and in bf16.

bf16 autocast is about 2x faster than fp32 on CPUs with bf16 matrix units (AVX512-BF16, AMX) and
several times slower on those without (every bf16 matmul is emulated), and the thread count and
the other work on the machine move the balance, so the demo measures instead of guessing:

    python -m gpt2_training.precision models/config.json --batch 8 --seq 128 --json out.json

The updates are the loop's (LMLoss, the original's Adam, weights cast once per update) on random
tokens, interleaved fp32/bf16 for `--rounds` rounds after one warm-up each; the result is the
median seconds per update of each, and the faster one. bf16 must win by `MARGIN` to be chosen: on
a machine where the two are close the choice would otherwise flip between runs, and the losses
depend on it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

MARGIN = 1.10  # bf16 is chosen when fp32 takes at least this many times as long
GIVE_UP = 3.0  # a bf16 warm-up this many times slower than fp32's: no rounds (see measure)


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
    """{"fp32": median s/update, "bf16": ..., "rounds": n, "choice": "bf16" | "fp32"}. Where bf16's
    warm-up update already takes `GIVE_UP` times fp32's (emulated bf16: no bf16 units), the
    rounds are skipped (rounds 0, the warm-up times): bf16 cannot win, and each of its updates
    would cost the demo seconds."""
    timers = {p: update_timer(config, batch, seq, p) for p in ("fp32", "bf16")}
    warm = {p: f() for p, f in timers.items()}  # warm-up: optimizer state, allocator, oneDNN kernels
    if warm["bf16"] > GIVE_UP * warm["fp32"]:
        return {"fp32": warm["fp32"], "bf16": warm["bf16"], "rounds": 0, "choice": "fp32"}
    times = {p: [] for p in timers}
    for _ in range(rounds):
        for p, f in timers.items():
            times[p].append(f())
    med = {p: statistics.median(v) for p, v in times.items()}
    choice = "bf16" if med["fp32"] >= MARGIN * med["bf16"] else "fp32"
    return {"fp32": med["fp32"], "bf16": med["bf16"], "rounds": rounds, "choice": choice}


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
    how = f"median of {res['rounds']}" if res["rounds"] else "one warm-up update each"
    print(f"fp32 {res['fp32']:.2f} s/update, bf16 {res['bf16']:.2f} s/update ({how}): {res['choice']}")
    if a.json:
        from lsp_io.atomic import atomic_file
        with atomic_file(a.json, "w") as f:
            f.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
