"""The demo's small build system: stamps that say what a stage's outputs were made from, and a
runner that streams a command's output to the console and a log and turns failure into one error.

A stage is skipped when its outputs are valid and its stamp `stamps/<stage>.json` records the
same key (its settings and the fingerprints, size + mtime, of its inputs).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


class StageError(RuntimeError):
    """A stage that failed; the message is what the user needs (the stage's own error, the log)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a stage; str() is what was kept (e.g. "; training resumes from update 250")."""


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def fingerprint(path: Path) -> list | None:
    """(size, mtime_ns) of a file, or of a folder's meta.json; None when absent."""
    p = Path(path)
    if p.is_dir():
        p = p / "meta.json"
    if not p.is_file():
        return None
    st = p.stat()
    return [st.st_size, st.st_mtime_ns]


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def read_stamp(out: Path, stage: str) -> dict | None:
    try:
        return json.loads((out / "stamps" / f"{stage}.json").read_text())
    except (OSError, ValueError):
        return None


def write_stamp(out: Path, stage: str, key: dict, **extra) -> None:
    from lsp_io.atomic import atomic_file
    with atomic_file(out / "stamps" / f"{stage}.json", "w") as f:
        f.write(json.dumps({"key": key, **extra}, indent=2, default=str) + "\n")


def stamp_matches(out: Path, stage: str, key: dict) -> dict | None:
    stamp = read_stamp(out, stage)
    return stamp if stamp is not None and stamp.get("key") == json.loads(json.dumps(key, default=str)) else None


def run(out: Path, stage: str, cmd: list, *, repo: Path, threads: int | None = None, quiet: bool = False,
        watch: Callable[[], str | None] | None = None) -> None:
    """Run `cmd` in `repo`, streaming its output to the console (unless quiet) and to
    logs/<stage>.log. `watch()` is polled while it runs; a line it returns is printed.
    Non-zero exit: StageError (with the command's last lines when quiet: else they are on screen).
    Ctrl-C: the command gets it too; we wait for it to finish, then re-raise."""
    log_path = out / "logs" / f"{stage}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(c) for c in cmd]
    say(f"{stage}: $ {' '.join(cmd)}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    tail = bytearray(b"\n")
    t0 = time.time()
    with open(log_path, "wb") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        try:
            proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as e:
            raise StageError(f"{stage}: cannot run {cmd[0]}: {e}") from None
        with proc:
            try:
                while chunk := os.read(proc.stdout.fileno(), 65536):
                    log.write(chunk)
                    if not quiet:
                        sys.stdout.buffer.write(chunk)
                        sys.stdout.flush()
                    tail = (tail + chunk)[-8192:]
                    line = watch() if watch is not None else None
                    if line:
                        if not quiet and tail[-1:] not in (b"\n",):
                            print(flush=True)  # off the progress bar's line
                        say(line)
            except KeyboardInterrupt:
                proc.wait()  # it got the same SIGINT: let it finish its own clean-up
                raise
        rc = proc.wait()
    if rc != 0:
        msg = f"{stage} failed (exit status {rc}) after {time.time() - t0:.0f}s"
        if quiet:
            text = tail.decode("utf-8", "replace").replace("\r", "\n")
            last = [ln for ln in text.splitlines() if ln.strip()][-6:]
            msg += ":\n" + "\n".join("  | " + ln for ln in last)
        else:
            msg += " (its output is above)"
        raise StageError(msg + f"\n  full log: {log_path}")
    say(f"{stage}: done in {time.time() - t0:.0f}s")
