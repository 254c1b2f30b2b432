"""The whole demo on an idle machine against the same machine with one busy core.

    python benchmarks/bench_demo_busy.py [--steps 500] [--rounds 1] [--idle_only] [--json FILE] [-- demo flags]

Each round runs `python demo.py` (its defaults: threads from the free cores, bf16 where the CPU
has it) once idle and once beside one `python -c 'while 1: pass'` burner, alternating which
goes first, each into a fresh output folder, and reads the per-stage seconds the demo writes to
summary.json. Prints the totals (median [min-max]) and the busy/idle ratio of each round;
`--idle_only` times the idle demo alone (the README's end-to-end figure, 3 rounds in ~25 min).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_busy import Burner  # noqa: E402
from common import load, write_json  # noqa: E402


def run_demo(out: Path, steps: int, extra: list[str], busy: bool) -> dict:
    cmd = [sys.executable, str(REPO / "demo.py"), "--steps", str(steps), "--output_dir", str(out), "--quiet", *extra]
    with Burner() if busy else contextlib.nullcontext():
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"demo failed ({'busy' if busy else 'idle'}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    cpu_line = next((ln for ln in r.stdout.splitlines() if "[demo] cpu:" in ln), "")
    return dict(wall=wall, stages=summary.get("timings", {}), cpu=cpu_line.strip(),
                eval=summary["loss"]["eval"][-1] if summary["loss"]["eval"] else None)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--idle_only", action="store_true", help="no burner: the idle demo's time only")
    p.add_argument("--json")
    a, extra = p.parse_known_args(argv)
    extra = [x for x in extra if x != "--"]
    print(f"{load()}; demo --steps {a.steps} {' '.join(extra)}; {a.rounds} round(s)")
    res = {"idle": [], "busy": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(a.rounds):
            for busy in ([False] if a.idle_only else [False, True] if k % 2 == 0 else [True, False]):
                name = "busy" if busy else "idle"
                r = run_demo(Path(tmp) / f"{name}{k}", a.steps, extra, busy)
                res[name].append(r)
                print(f"round {k + 1} {name}: {r['wall']:.0f} s  {r['cpu']}  stages {r['stages']}  last eval {r['eval']}",
                      flush=True)
    rows = []
    for name in ("idle", "busy"):
        walls = [r["wall"] for r in res[name]]
        if not walls:
            continue
        rows.append(dict(name=f"demo {name}", median_s=round(statistics.median(walls), 1), lo=round(min(walls), 1),
                         hi=round(max(walls), 1)))
        print(f"demo {name}: median {statistics.median(walls):.0f} s [{min(walls):.0f}-{max(walls):.0f}] over "
              f"{len(walls)} run(s)")
    if res["busy"]:
        ratios = [b["wall"] / i["wall"] for i, b in zip(res["idle"], res["busy"])]
        rows.append(dict(name="busy / idle", ratio=round(statistics.median(ratios), 2),
                         rounds=[round(x, 2) for x in ratios]))
        print(f"busy / idle: {statistics.median(ratios):.2f}x (rounds {', '.join(f'{x:.2f}' for x in ratios)})")
    print(load())
    write_json(a.json, "demo_busy", rows)


if __name__ == "__main__":
    main()
