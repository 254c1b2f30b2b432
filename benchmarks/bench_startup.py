"""Start-up time of every command's --help (wall clock, a fresh interpreter each time), next to
a bare `python -c pass`: the difference is what the script's own imports cost.

    python benchmarks/bench_startup.py                          # this checkout, 5 rounds
    python benchmarks/bench_startup.py --repo . --repo ../main   # two checkouts, before/after

The commands (and checkouts) run interleaved, round by round, so a busy machine slows all alike.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "LSP_train.py --help": ["LSP_train.py", "--help"],
    "decode.py --help": ["decode.py", "--help"],
    "interact.py --help": ["interact.py", "--help"],
    "prepro.py --help": ["prepro.py", "--help"],
    "data_loader.py --help": ["data_loader.py", "--help"],
    "demo.py --help": ["demo.py", "--help"],
    "python -m dstc --help": ["-m", "dstc", "--help"],
    "python -m lsp_model.convert --help": ["-m", "lsp_model.convert", "--help"],
    "LSP_train.py --fp16 maybe (rejected)": ["LSP_train.py", "--fp16", "maybe"],
    "python -m dialogpt --help": ["-m", "dialogpt", "--help"],   # = the installed `dialogpt` command
    "python -m dialogpt decode --help": ["-m", "dialogpt", "decode", "--help"],
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, action="append", help="checkout to time (repeatable; default: this one)")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    repos = args.repo or [Path(__file__).resolve().parents[1]]
    times = {(r, k): [] for r in repos for k in COMMANDS}
    for _ in range(args.rounds):
        for name, cmd in COMMANDS.items():
            for repo in repos:
                t = time.perf_counter()
                subprocess.run([sys.executable, *cmd], cwd=repo, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                times[repo, name].append(time.perf_counter() - t)
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"{args.rounds} rounds; seconds: median [min-max]")
    print(f"  {'command':40s}" + "".join(f"{str(r)[-21:]:>22s}" for r in repos))
    for name in COMMANDS:
        cells = [times[r, name] for r in repos]
        print(f"  {name:40s}" + "".join(f"{statistics.median(ts):8.2f} [{min(ts):5.2f}-{max(ts):5.2f}]" for ts in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
