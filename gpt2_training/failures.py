"""How a training run stops when it cannot go on: one line, a documented exit status, and the
checkpoint to resume from. The exit statuses (docs/training.md, "Exit status"):

  2    bad input: flags, files, a DB or checkpoint that does not fit, a run folder in use,
       a corrupt DB chunk met during training
  3    a non-finite loss (fp32/bf16)
  4    a checkpoint could not be written (disk full, quota, permissions); the previous pair stays
  130  SIGINT (Ctrl-C), 143 SIGTERM: stopped between two steps; resume from the last checkpoint
Anything else is a bug and keeps its traceback (status 1).
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from pathlib import Path

from lsp_model.runfolder import latest_weights, results, step_of

from .args import UsageError

RESUME_HINT = "resume with --resume_from_checkpoint last"


class TrainStop(Exception):
    """Training stopped for a reason the user can act on; `exit_code` is documented."""
    exit_code = 1


class TrainingDiverged(TrainStop, RuntimeError):
    """A non-finite loss in fp32/bf16: the run stops, the last saved checkpoint stays the good one."""
    exit_code = 3


class CheckpointWriteError(TrainStop):
    """Writing a checkpoint file failed (disk full, ...); the previous complete pair is untouched."""
    exit_code = 4

    def __init__(self, path, reason: str, previous):
        where = (f"the previous checkpoint {previous} stays intact; free space, then {RESUME_HINT}"
                 if previous is not None else "no earlier checkpoint of this run exists; free space and start again")
        super().__init__(f"cannot write {path}: {reason}; {where}")


class Interrupted(TrainStop):
    """SIGINT/SIGTERM during training; `describe()` adds where the run stopped."""

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_code = 128 + signum  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them
        super().__init__(f"interrupted by {signal.Signals(signum).name} before training started; nothing to resume")

    def describe(self, update: int, last_checkpoint, run_dir) -> None:
        """Called after the run folder was kept or removed (loop._remove_unfinished): says which."""
        newest = latest_weights(run_dir) if run_dir is not None else None
        lone = (f"; {newest.name} was written but not its resume state, so exact resume cannot start there"
                if newest is not None and step_of(newest) != last_checkpoint else "")
        if last_checkpoint is not None:
            msg = f"interrupted at update {update}; the last checkpoint is step {last_checkpoint} in {run_dir}{lone}; {RESUME_HINT}"
        elif run_dir is None or not Path(run_dir).is_dir():
            msg = (f"interrupted at update {update}, before the first checkpoint; nothing to resume "
                   f"(the run folder held only its own scaffolding and is removed)")
        else:
            msg = (f"interrupted at update {update}, before the first complete checkpoint{lone}; nothing to resume "
                   f"from (exact resume starts from the last complete .pkl + .resume.pt pair); {run_dir} is kept "
                   f"with what it holds ({', '.join(results(run_dir))})")
        self.args = (msg,)


def failure(e: BaseException) -> int | None:
    """The documented exit status for `e`, or None for an unexpected error (a bug: let it raise)."""
    if isinstance(e, UsageError):
        return 2
    if isinstance(e, TrainStop):
        return e.exit_code
    return None


def os_error(e: BaseException) -> OSError | None:
    """The OSError behind `e`: itself, or the one torch's writer chains under a RuntimeError
    ('[enforce fail at inline_container.cc] ...' when the file write fails)."""
    while e is not None:
        if isinstance(e, OSError):
            return e
        e = e.__cause__ or e.__context__
    return None


@contextlib.contextmanager
def writing(path, previous):
    """Turn a failed write of `path` into a CheckpointWriteError naming it and `previous`."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        err = os_error(e)
        if err is None and "inline_container" not in str(e):
            raise
        reason = os.strerror(err.errno) if err is not None and err.errno else str(err or e).splitlines()[0]
        if err is not None and err.errno == errno.ENOSPC:
            reason = "no space left on device"
        raise CheckpointWriteError(path, reason, previous) from None


# ---- signals: SIGINT/SIGTERM become Interrupted between two steps of Python code, except
# during a checkpoint write, which finishes first (a write in progress is never abandoned).

_hold = threading.local()


def _handler(signum, _frame):
    if getattr(_hold, "depth", 0):
        _hold.pending = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals():
    """Install the SIGINT/SIGTERM handler for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def held_signals():
    """Hold SIGINT/SIGTERM while the body runs; raise Interrupted after it if one came."""
    _hold.depth = getattr(_hold, "depth", 0) + 1
    try:
        yield
    except BaseException:
        _hold.pending = None  # the body failed: that error is what the user sees
        raise
    finally:
        _hold.depth -= 1
    pending = getattr(_hold, "pending", None)
    if pending is not None and _hold.depth == 0:
        _hold.pending = None
        raise Interrupted(pending)
