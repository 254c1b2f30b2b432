"""The run folder: one per run, created exclusively, locked while a process trains in it, and
self-describing (config.json and the tokenizer files next to the checkpoints, so
`lsp_model.checkpoint.load_model(RUN_DIR)` rebuilds exactly what was trained).

The lock is `train.lock` (JSON: pid, host, started). A second writer is refused with a line
naming the holder; a lock whose pid no longer runs on this host is stale and taken over.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from lsp_io.atomic import atomic_file
from lsp_model.runfolder import LOCK, run_dir_name  # noqa: F401 (the layout's owner; loop.py names it from here)
from lsp_model.tokenizer import load_tokenizer, save_tokenizer, tokenizer_identity

from .args import UsageError

# what a checkpoint's tensors do not determine, or what must equal the run's own model
ARCH_KEYS = ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size", "activation_function",
             "layer_norm_epsilon")


def create_run_dir(output_dir, name: str) -> Path:
    """Make `output_dir/name`, never reusing a folder: if it exists (two runs in the same second),
    `name-2`, `name-3`, ... The mkdir itself is the claim, so racing processes get distinct ones."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    for i in range(1, 10000):
        path = Path(output_dir) / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UsageError(f"--output_dir {output_dir}: cannot create a new run folder {name}-N")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _read_lock(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written, or garbage: treat as held by an unknown process


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold `run_dir/train.lock` for the body. Refuses (UsageError) if a live process holds it."""
    path = Path(run_dir) / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    fd, tmp = tempfile.mkstemp(prefix=f".{LOCK}.tmp-", dir=run_dir)
    with os.fdopen(fd, "w") as f:
        json.dump(me, f)
    try:
        for _ in range(3):
            try:
                _claim(tmp, path)
                break
            except FileExistsError:
                _take_over_if_stale(path, run_dir)
        else:
            raise UsageError(f"{path}: cannot take the run folder's lock")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    try:
        yield path
    finally:
        if _read_lock(path) == me:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _claim(tmp: str, path: Path) -> None:
    """Publish the lock file whole (a hard link fails if the lock exists); O_EXCL where links are
    not supported. Raises FileExistsError if it is held."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        with os.fdopen(fd, "w") as f:
            f.write(Path(tmp).read_text())


def _take_over_if_stale(path: Path, run_dir) -> None:
    held = _read_lock(path)
    if held is None:
        return  # released meanwhile: try again
    pid, host = held.get("pid"), held.get("host")
    if isinstance(pid, int) and host == socket.gethostname() and not _pid_alive(pid):
        stale = path.with_name(f".{LOCK}.stale-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, stale)
            if _read_lock(stale) != held:  # another process took it over in between: give it back
                with contextlib.suppress(FileExistsError):
                    os.link(stale, path)
            stale.unlink()
        return
    raise UsageError(f"{run_dir} is in use by pid {pid if pid is not None else '?'} on host "
                     f"{host or '?'} (since {held.get('started', '?')}; {path}); two runs must not share a run "
                     f"folder. If that process is gone, delete {path}")


def describe(run_dir, config, tokenizer) -> None:
    """Write config.json (the true n_head) and the tokenizer files into the run folder."""
    run_dir = Path(run_dir)
    with atomic_file(run_dir / "config.json", "w") as f:
        f.write(config.to_json_string(use_diff=False))
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer.tmp-", dir=run_dir))
    try:
        save_tokenizer(tokenizer, tmp)
        for f in tmp.iterdir():
            os.replace(f, run_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_resume_fits(run_dir, config, tokenizer, model_path) -> None:
    """On resume: the run's own config.json and tokenizer must be the ones given now (a different
    head count has the same tensor shapes and would train a different model silently)."""
    run_dir = Path(run_dir)
    own = run_dir / "config.json"
    if not own.is_file():  # a run folder of an older version: the weights' shapes decide
        return
    saved = json.loads(own.read_text())
    diff = [f"{k} {saved.get(k)} vs {getattr(config, k, None)}" for k in ARCH_KEYS
            if k in saved and saved[k] != getattr(config, k, None)]
    if diff:
        raise UsageError(f"--resume_from_checkpoint: {own} does not fit --model_name_or_path {model_path} "
                         f"({', '.join(diff)}); resume with --model_name_or_path {run_dir}")
    if (run_dir / "tokenizer.json").is_file() and \
            tokenizer_identity(load_tokenizer(run_dir)) != tokenizer_identity(tokenizer):
        raise UsageError(f"--resume_from_checkpoint: {run_dir} was trained with another tokenizer than "
                         f"--model_name_or_path {model_path}'s; resume with --model_name_or_path {run_dir}")


def remove_leftovers(run_dir) -> list[Path]:
    """Delete the `.NAME.tmp-*` files/folders a killed save left (call with the lock held)."""
    gone = []
    for p in Path(run_dir).glob(".*.tmp-*"):
        if p.name.startswith(f".{LOCK}."):
            continue  # another process's lock being published (it will be refused and clean up)
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        gone.append(p)
    return gone
