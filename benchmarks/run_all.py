"""Reproduce the README's performance table: run every benchmark it quotes, then write it.

    python benchmarks/run_all.py --quick             # the README's settings, < 15 min on 2 idle cores
    python benchmarks/run_all.py                     # fuller: training at accumulation 8, more rounds
    python benchmarks/run_all.py --quick --no_write  # print and keep the JSON, leave README alone
    python benchmarks/run_all.py --extra             # the other stages' table: loader, evaluation, Reddit (~12 min)

Each benchmark runs in its own process (one torch thread) and prints its own table: median
[min-max] over >= 3 interleaved rounds of ours and its peer in one process, with the load average
before and after. Its --json goes to --out; then write_readme_table.py rewrites README's table
from those files (each row says the date, machine and load it ran under). On a shared machine the
absolute numbers move with the load; read the same-round ratios and their ranges.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# name -> (script, arguments): what the README table quotes
PLANS = {
    "quick": {
        "train": ["bench_train.py", "--accum", "2", "--rounds", "3"],
        "optim": ["bench_optim.py", "--rounds", "3"],
        "prepro": ["bench_prepro.py", "--lines", "20000", "--rounds", "3"],
        # the setting (32 new tokens) for greedy and sampling; beam at 8 (batch 32 x 4 beams is slow)
        "decode": ["bench_decode.py", "--rounds", "3", "--modes", "greedy", "sample", "--new_tokens", "32"],
        "decode_beam": ["bench_decode.py", "--rounds", "3", "--modes", "beam4", "--new_tokens", "8"],
    },
    "full": {
        "train": ["bench_train.py", "--accum", "8", "--rounds", "3"],
        "optim": ["bench_optim.py", "--rounds", "7"],
        "prepro": ["bench_prepro.py", "--rounds", "3"],
        "decode": ["bench_decode.py", "--rounds", "3"],
    },
    # README's second table (stages without a torch peer in the same process)
    "extra": {
        "loader": ["bench_loader.py", "--rounds", "3"],
        "dstc": ["bench_dstc.py", "--no-meteor", "--rounds", "3"],
        "reddit": ["bench_reddit.py", "--rounds", "3"],
    },
}


def loadavg() -> str:
    return "load avg %.1f %.1f %.1f" % os.getloadavg()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the README's settings (< 15 min on 2 idle cores)")
    ap.add_argument("--extra", action="store_true", help="the other stages' table instead (loader, evaluation, Reddit)")
    ap.add_argument("--only", nargs="+", choices=sorted({k for plan in PLANS.values() for k in plan}),
                    help="run these benchmarks of the plan only")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="where the --json files go")
    ap.add_argument("--no_write", action="store_true", help="do not rewrite README.md's table")
    a = ap.parse_args(argv)
    plan = PLANS["extra" if a.extra else "quick" if a.quick else "full"]
    if a.only and set(a.only) - set(plan):
        ap.error(f"--only {' '.join(sorted(set(a.only) - set(plan)))}: not in this plan ({', '.join(plan)})")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    files, t_all = [], time.time()
    for name, (script, *args) in plan.items():
        if a.only and name not in a.only:
            continue
        path = out / f"{name}.json"
        cmd = [sys.executable, str(HERE / script), *args, "--json", str(path)]
        print(f"== {name}: {' '.join(cmd[1:])}  ({loadavg()})", flush=True)
        t = time.time()
        r = subprocess.run(cmd, cwd=REPO, env=env)
        print(f"== {name}: {time.time() - t:.0f} s, exit {r.returncode}  ({loadavg()})", flush=True)
        if r.returncode != 0:
            print(f"run_all: {script} failed (exit {r.returncode}); README left as it was", file=sys.stderr)
            return 1
        files.append(str(path))
    print(f"== all: {time.time() - t_all:.0f} s ({loadavg()})")
    if not a.no_write and files:
        # the whole table: with --only, the other rows come from their last JSON in --out
        table = [str(out / f"{name}.json") for name in plan if (out / f"{name}.json").exists()]
        sys.path.insert(0, str(REPO))
        from write_readme_table import main as write_table
        write_table(table)
        print(f"README.md table written from {', '.join(table)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
