"""How many CPU cores this process can use right now: the thread count for torch on a shared box.

torch starts one OpenMP thread per core. When other work holds some of those cores, the threads
wait for each other in barriers and a training step gets several times slower than with fewer
threads (the demo's model on a 2-core machine that other jobs kept busy: 20.7 s per step with
2 threads, 8.6 s with 1). So a CPU job should run as many threads as there are *free* cores.

free = cores this process may run on (sched_getaffinity) minus how many of them are busy, where
busy comes from /proc/stat sampled over a short window (per allowed core: what a burner pinned
to another core does not count), or from the 1-minute load average where /proc/stat is missing.
Always at least 1.
"""
from __future__ import annotations

import os
import time


def allowed_cpus() -> list[int]:
    """The CPU ids this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return list(range(os.cpu_count() or 1))


def _proc_stat() -> dict[int, tuple[int, int]]:
    """{cpu id: (busy jiffies, total jiffies)} from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            v = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
            idle = v[3] + (v[4] if len(v) > 4 else 0)
            out[int(name[3:])] = (sum(v) - idle, sum(v))
    return out


def busy_cores(cpus: list[int], window: float = 0.5) -> float | None:
    """How many of `cpus` were busy over the next `window` seconds (None without /proc/stat)."""
    try:
        a = _proc_stat()
        time.sleep(window)
        b = _proc_stat()
    except (OSError, ValueError):
        return None
    busy = 0.0
    for c in cpus:
        if c in a and c in b and b[c][1] > a[c][1]:
            busy += (b[c][0] - a[c][0]) / (b[c][1] - a[c][1])
    return busy


def free_cores(window: float = 0.5) -> tuple[int, int, float]:
    """(free cores, usable cores, busy cores): the thread count to use is the first, >= 1."""
    cpus = allowed_cpus()
    busy = busy_cores(cpus, window)
    if busy is None:
        try:
            busy = min(float(len(cpus)), os.getloadavg()[0])
        except (AttributeError, OSError):
            busy = 0.0
    return max(1, len(cpus) - round(busy)), len(cpus), busy


def use_huge_pages() -> None:
    """Have torch's CPU allocator back large tensors with transparent huge pages (Linux; call it
    before torch is imported, it reads the setting once; THP_MEM_ALLOC_ENABLE=0 keeps it off).

    Without them every large tensor is fresh 4 KB pages from mmap, faulted in one by one: a
    demo-model update took ~250k page faults, a third of its time in the kernel, and beside a
    busy core 1 thread trained 7x slower than 2 idle ones (1.3x with huge pages; docs/demo.md,
    "Timing"). The arithmetic is unchanged.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def has_bf16() -> bool:
    """Whether the CPU has bf16 matrix units (AVX512-BF16 or AMX-BF16: oneDNN then runs bf16 fast)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB (VmHWM). Not ru_maxrss: Linux carries that over
    from the parent across fork and exec, so a child of a big process reports the parent's peak."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
