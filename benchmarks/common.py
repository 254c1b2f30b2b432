"""Shared by the benchmarks: interleaved timing rounds, median/spread, load, machine, JSON rows.

Every benchmark prints a human table and, with --json FILE, writes the same rows as JSON
(benchmarks/write_readme_table.py turns those files into the README's performance table)."""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def interleaved(fns: dict, rounds: int) -> dict:
    """{name: [seconds per round]}: each round runs every fn once, so load spikes hit all of them."""
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return times


def summary(xs) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(xs), min(xs), max(xs)


def ratio_rounds(a, b) -> list[float]:
    """Per-round a/b: same-round ratios cancel most of the shared-CPU noise."""
    return [x / y for x, y in zip(a, b)]


def load() -> str:
    return "load avg %.1f %.1f %.1f" % os.getloadavg()


def write_json(path: str | None, bench: str, rows: list[dict]) -> None:
    if not path:
        return
    from lsp_io.atomic import atomic_file
    doc = dict(bench=bench, date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
               machine=machine(), load=load(), rows=rows)
    with atomic_file(Path(path), "w") as f:
        f.write(json.dumps(doc, indent=1) + "\n")
