"""The training run folder's layout: every name in it, and the finders. The one owner of these
names: the trainer writes through it, and the loaders, the converter and the demo read through
it (torch-free, so the demo's parent process finds files without importing torch).

    OUTPUT_DIR/GPT2.{lr}.{micro batch}.{n}gpu.{timestamp}/     the original's run-folder name
        GP2-pretrain-step-N.pkl        weights after update N, the original's layout (and its name)
        GP2-pretrain-step-N.resume.pt  the exact-resume state; written last, so it marks N complete
        GP2-pretrain-step-N-hf/        a transformers export of N (--save_hf)
        GP2-pretrain-step-N-lora/      a LoRA run's weights after update N: the adapter alone (peft)
        train_log.txt, eval_log.txt    the original's CSV logs
        train.lock                     held while a process trains here
        config.json + tokenizer files  what makes the folder loadable by itself
        run_config.json                the resolved flags of the run

A folder that holds anything but the scaffolding a new run writes before its first update
(`SCAFFOLDING`, logs with only their header, a killed save's hidden `.*.tmp-*`) holds a user's
results and is never deleted (`results`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

RUN_PREFIX = "GPT2."
CKPT_PREFIX = "GP2-pretrain-step-"
WEIGHTS_RE = re.compile(rf"{CKPT_PREFIX}(\d+)\.pkl$")
RESUME_RE = re.compile(rf"{CKPT_PREFIX}(\d+)\.resume\.pt$")
ADAPTER_RE = re.compile(rf"{CKPT_PREFIX}(\d+)-lora$")
ADAPTER_CONFIG = "adapter_config.json"   # peft's: marks a folder as an adapter
TRAIN_LOG, EVAL_LOG = "train_log.txt", "eval_log.txt"
LOCK = "train.lock"
RUN_CONFIG = "run_config.json"
SCAFFOLDING = frozenset({"config.json", RUN_CONFIG, LOCK, "tokenizer.json", "vocab.json", "merges.txt",
                         "tokenizer_config.json"})


def run_dir_name(lr: float, micro_batch: int, n_gpu: int, timestamp: str) -> str:
    return f"{RUN_PREFIX}{lr}.{micro_batch}.{n_gpu}gpu.{timestamp}"


def run_dirs(output_dir: str | os.PathLike) -> list[Path]:
    """The run folders under an --output_dir, by name."""
    out = Path(output_dir)
    return sorted(p for p in out.glob(f"{RUN_PREFIX}*") if p.is_dir()) if out.is_dir() else []


def weights_path(run_dir: str | os.PathLike, step: int) -> Path:
    """`run_dir/GP2-pretrain-step-N.pkl`, the original's name for the weights after update N."""
    return Path(run_dir) / f"{CKPT_PREFIX}{step}.pkl"


def resume_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / f"{CKPT_PREFIX}{step}.resume.pt"


def hf_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / f"{CKPT_PREFIX}{step}-hf"


def adapter_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / f"{CKPT_PREFIX}{step}-lora"


def is_adapter(path: str | os.PathLike) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def has_weights(run_dir: str | os.PathLike, step: int) -> bool:
    """The weights half of a checkpoint pair: the .pkl, or a LoRA run's adapter folder."""
    return weights_path(run_dir, step).is_file() or is_adapter(adapter_path(run_dir, step))


def step_of(path: str | os.PathLike) -> int | None:
    """N of a GP2-pretrain-step-N.pkl, .resume.pt or -lora name, else None."""
    name = Path(path).name
    m = WEIGHTS_RE.search(name) or RESUME_RE.search(name) or ADAPTER_RE.search(name)
    return int(m.group(1)) if m else None


def _steps(run_dir: Path, pattern: re.Pattern) -> list[int]:
    if not run_dir.is_dir():
        return []
    return [int(m.group(1)) for p in run_dir.glob(f"{CKPT_PREFIX}*") if (m := pattern.search(p.name))]


def weight_steps(run_dir: str | os.PathLike) -> list[int]:
    """Updates with a weights file, newest first."""
    return sorted(_steps(Path(run_dir), WEIGHTS_RE), reverse=True)


def latest_weights(run_dir: str | os.PathLike) -> Path | None:
    """The highest-step GP2-pretrain-step-N.pkl of a run folder."""
    steps = weight_steps(run_dir)
    return weights_path(run_dir, steps[0]) if steps else None


def adapter_steps(run_dir: str | os.PathLike) -> list[int]:
    """Updates with an adapter folder, newest first."""
    return sorted((s for s in _steps(Path(run_dir), ADAPTER_RE) if is_adapter(adapter_path(run_dir, s))), reverse=True)


def complete_steps(run_dir: str | os.PathLike) -> list[int]:
    """Updates with both halves (weights and .resume.pt), newest first: the ones exact resume can use."""
    return sorted((s for s in _steps(Path(run_dir), RESUME_RE) if has_weights(run_dir, s)), reverse=True)


def results(run_dir: str | os.PathLike) -> list[str]:
    """Names in a run folder that are results (checkpoints, log rows, anything not ours): an empty
    list means the folder holds only a new run's scaffolding and may be removed."""
    found = []
    for p in sorted(Path(run_dir).iterdir()) if Path(run_dir).is_dir() else []:
        if p.name in SCAFFOLDING or (p.name.startswith(".") and ".tmp-" in p.name):
            continue
        if p.name in (TRAIN_LOG, EVAL_LOG) and p.is_file() and not _has_rows(p):
            continue
        found.append(p.name)
    return found


def _has_rows(log: Path) -> bool:
    """A CSV log with a line after its header (reads two lines at most)."""
    with open(log, "rb") as f:
        return sum(1 for _, line in zip(range(2), f) if line.strip()) == 2
