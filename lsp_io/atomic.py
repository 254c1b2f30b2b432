"""Atomic writes: build under a temporary name in the same folder, then rename into place.

Guarantees, for every file and folder written through here:
  * a reader sees the old complete output or the new complete one, never a half one;
  * the new one is on disk before it gets the final name (files fsynced, then the folder, then
    the rename, then the parent folder), so a crash or power loss cannot leave a final name
    pointing at unwritten data;
  * `atomic_dir(..., overwrite=True)` swaps the new folder with the old in one step
    (renameat2 RENAME_EXCHANGE, Linux >= 3.15 on local filesystems), so there is no moment
    with nothing under the final name. Where the exchange is not available it falls back to
    two renames, with the old folder kept under `.<name>.old-*` until the new one is in
    place; the next write of that output puts it back if a kill fell between the two;
  * a kill leaves at most a hidden `.<name>.tmp-<host>-<pid>-<token>-*` sibling, which the next
    write of the same output removes once its process is gone (same host; the token tells an
    earlier process with the same pid, e.g. pid 1 in containers) or, written on another host,
    once nothing in it changed for a day;
  * permissions follow the user's umask, as with open()/mkdir (tempfile's own 0600/0700 would
    make models and DBs unreadable to colleagues).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path

_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide, not thread-safe)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# A temp name says who writes it: host, pid and a token of this process (the pid alone is not
# enough: in a container every run may be pid 1).
_TOKEN = secrets.token_hex(4)
# Leftovers of another host (or of an older version, without an owner) are removed only when
# nothing in them changed for this long: a live writer on a shared filesystem keeps writing.
STALE_AFTER_S = 24 * 3600


def _prefix(path: Path) -> str:
    return f".{path.name}.tmp-{_HOST}-{os.getpid()}-{_TOKEN}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _untouched_for(p: Path) -> float:
    """Seconds since p, or anything directly in it, last changed."""
    times = [p.lstat().st_mtime]
    if p.is_dir() and not p.is_symlink():
        times += [c.lstat().st_mtime for c in p.iterdir()]
    return time.time() - max(times)


def _stale(p: Path, host: str | None, pid: str | None, token: str | None) -> bool:
    if host == _HOST and pid is not None:
        if int(pid) == os.getpid():
            return token != _TOKEN  # an earlier process that had our pid
        return not _alive(int(pid))
    return _untouched_for(p) > STALE_AFTER_S


def remove_stale(path: str | os.PathLike) -> list[Path]:
    """Remove what killed writes of `path` left: `.<name>.tmp-*` whose process is gone (this
    host), or untouched for STALE_AFTER_S (another host; no owner in the name). A
    `.<name>.old-*` folder (a kill between the fallback's two renames) is put back when `path`
    is missing, else removed. Returns what was removed or restored."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    owner = r"(?:(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})-)?"
    tmp_re = re.compile(re.escape(f".{path.name}.tmp-") + owner + r"[^-]*$")
    old_re = re.compile(re.escape(f".{path.name}.old-") + owner + "$")
    done = []
    for p in path.parent.iterdir():
        m = tmp_re.match(p.name) or old_re.match(p.name)
        try:
            if m is None or not _stale(p, m["host"], m["pid"], m["token"]):
                continue
            if m.re is old_re and not os.path.lexists(path):
                os.replace(p, path)
            elif p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()
        except FileNotFoundError:  # another writer cleaned it first
            continue
        done.append(p)
    return done


def _fsync_path(p: Path, directory: bool = False) -> None:
    fd = os.open(p, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems cannot fsync a folder
        if not directory or e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            p = Path(folder) / name
            if not p.is_symlink():
                _fsync_path(p)
        _fsync_path(Path(folder), directory=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (renameat2 RENAME_EXCHANGE). False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False  # kernel or filesystem without the flag
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb"):
    """Yield an open temp file; on success fsync and rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_path(path.parent, directory=True)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False):
    """Yield a temp folder; on success fsync it and rename it to `path` (replacing it only if
    `overwrite`, in one atomic exchange where the system has one)."""
    path = Path(path)
    remove_stale(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        _fsync_tree(tmp)
        if not os.path.lexists(path):
            os.replace(tmp, path)
        elif _exchange(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)  # the old output, now under the temp name
        else:
            old = path.with_name(f".{path.name}.old-{_HOST}-{os.getpid()}-{_TOKEN}-")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_path(path.parent, directory=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
