"""How much one busy core slows the demo's work, and what thread count does about it.

    python benchmarks/bench_busy.py [--rounds 4] [--steps 4] [--json FILE]

A "busy core" is one `python -c 'while 1: pass'` burner, started before and stopped after each
busy measurement. Per round, interleaved: a pure-Python single-threaded workload (what the
demo's data stage does) alone and beside the burner, and a training step of the demo's model
(4 x 256, batch 8 x 96 tokens, bf16 autocast where the CPU has bf16 units, as the demo trains)
with 2 and 1 threads, idle and beside the burner. The pure-Python ratio is the ceiling: if a
single thread alone slows by 2x next to the burner, the two vCPUs are not independent cores and
no thread choice brings the busy demo within 2x of the idle one. torch's allocator uses huge
pages, as in LSP_train (THP_MEM_ALLOC_ENABLE=0 in the environment measures without them).
"""
from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import load, machine, ratio_rounds, summary, write_json  # noqa: E402


def python_work():
    d = {}
    for i in range(1_500_000):
        d[i % 1000] = d.get(i % 1000, 0) + len(str(i))
    return d


class Burner:
    def __enter__(self):
        self.p = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        self.p.kill()
        self.p.wait()


def train_steps(threads: int, steps: int, bf16: bool):
    import torch

    from lsp_model.model import build_model, lm_loss, make_config
    torch.manual_seed(0)
    model = build_model(make_config(n_layer=4, n_embd=256, n_head=4, n_positions=128))
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    ids = torch.randint(0, 50257, (8, 96))
    pos = torch.arange(96).expand_as(ids)

    def run():
        torch.set_num_threads(threads)
        for _ in range(steps):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(input_ids=ids, position_ids=pos, attention_mask=torch.ones_like(ids)).logits
            loss, _ = lm_loss(logits.float(), ids)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=4, help="training steps per measurement")
    p.add_argument("--json")
    a = p.parse_args(argv)
    from lsp_io.cpu import has_bf16, use_huge_pages
    use_huge_pages()  # as the demo's stages run (before torch is imported)
    bf16 = has_bf16()
    t2, t1 = train_steps(2, a.steps, bf16), train_steps(1, a.steps, bf16)
    t1()  # warm-up: allocator, oneDNN kernels

    fns = {"python alone": (python_work, False), "python + burner": (python_work, True),
           "train 2 threads idle": (t2, False), "train 1 thread idle": (t1, False),
           "train 1 thread + burner": (t1, True), "train 2 threads + burner": (t2, True)}
    print(f"{machine()}; {load()}; bf16 {bf16}; {a.rounds} rounds, {a.steps} steps per training measurement")
    times = {k: [] for k in fns}
    for _ in range(a.rounds):  # interleaved; the burner starts before the clock and stops after it
        for name, (fn, burn) in fns.items():
            with Burner() if burn else contextlib.nullcontext():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    rows = []
    for name, xs in times.items():
        med, lo, hi = summary(xs)
        rows.append(dict(name=name, median_s=round(med, 3), min_s=round(lo, 3), max_s=round(hi, 3)))
        print(f"{name:28s} {med:7.2f} s  (min {lo:.2f}, max {hi:.2f})")
    for what, num, den in [("single thread slowed by the burner", "python + burner", "python alone"),
                           ("busy (1 thread) / idle (2 threads), training", "train 1 thread + burner", "train 2 threads idle"),
                           ("busy (2 threads) / busy (1 thread), training", "train 2 threads + burner", "train 1 thread + burner"),
                           ("idle 1 thread / idle 2 threads, training", "train 1 thread idle", "train 2 threads idle")]:
        med, lo, hi = summary(ratio_rounds(times[num], times[den]))
        rows.append(dict(name=what, ratio=round(med, 2), min=round(lo, 2), max=round(hi, 2)))
        print(f"{what:46s} {med:5.2f}x  (rounds {lo:.2f}-{hi:.2f})")
    print(load())
    write_json(a.json, "busy", rows)


if __name__ == "__main__":
    main()
