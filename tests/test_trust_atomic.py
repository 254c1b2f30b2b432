"""lsp_io.atomic: leftovers of a kill are removed by the next write, the umask is followed,
folders are fsynced before the rename, and an overwrite never leaves the final name empty."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from lsp_io import atomic
from lsp_io.atomic import atomic_dir, atomic_file, remove_stale

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_files_and_folders_follow_the_umask(tmp_path, umask_022):
    with atomic_file(tmp_path / "a.pkl") as f:
        f.write(b"x")
    with atomic_dir(tmp_path / "db") as d:
        (d / "meta.json").write_text("{}")
    assert mode(tmp_path / "a.pkl") == 0o644          # tempfile alone gives 0600
    assert mode(tmp_path / "db") == 0o755             # and 0700
    assert mode(tmp_path / "db" / "meta.json") == 0o644


def killed_writer(tmp_path, kind: str) -> None:
    """A process killed (SIGKILL, no cleanup) in the middle of an atomic write of tmp_path/out."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {REPO!r})
        from lsp_io.atomic import atomic_dir, atomic_file
        if {kind!r} == "file":
            with atomic_file({str(tmp_path / 'out')!r}) as f:
                f.write(b"half"); f.flush(); os.kill(os.getpid(), signal.SIGKILL)
        with atomic_dir({str(tmp_path / 'out')!r}, overwrite=True) as d:
            (d / "db.dat").write_bytes(b"half"); os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_next_write_removes_leftovers_of_a_kill(tmp_path, kind):
    killed_writer(tmp_path, kind)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".out.tmp-"), left
    # a live writer's temp (this process) is never touched
    mine = tmp_path / f".out.tmp-{atomic._HOST}-{os.getpid()}-{atomic._TOKEN}-live"
    mine.write_bytes(b"in progress")
    if kind == "file":
        with atomic_file(tmp_path / "out") as f:
            f.write(b"whole")
    else:
        with atomic_dir(tmp_path / "out") as d:
            (d / "db.dat").write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", mine.name])


def test_same_pid_other_process_and_other_hosts(tmp_path):
    """In a container every run can be pid 1: a leftover with our pid but another process's
    token is stale. Another host's leftover goes only once untouched for STALE_AFTER_S."""
    (tmp_path / "out").write_bytes(b"old")
    earlier = tmp_path / f".out.tmp-{atomic._HOST}-{os.getpid()}-0badf00d-x1"
    fresh = tmp_path / ".out.tmp-otherhost-123-0badf00d-x2"
    old = tmp_path / ".out.tmp-otherhost-124-0badf00d-x3"
    legacy = tmp_path / ".out.tmp-ab12cd34"                   # an older version's name: no owner
    for p in (earlier, fresh, old, legacy):
        p.write_bytes(b"half")
    two_days_ago = time.time() - 2 * 86400
    for p in (old, legacy):
        os.utime(p, (two_days_ago, two_days_ago))
    assert sorted(remove_stale(tmp_path / "out")) == sorted([earlier, old, legacy])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", fresh.name])


def test_dir_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    synced, renamed = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: renamed.append(len(synced)) or real_replace(a, b))
    with atomic_dir(tmp_path / "x.db") as d:
        for name in ("db.dat", "db.dir", "meta.json"):
            (d / name).write_text(name)
    names = [os.path.basename(p) for p in synced]
    assert {"db.dat", "db.dir", "meta.json"} <= set(names[:renamed[0]])  # all before the rename
    assert any(os.path.basename(p).startswith(".x.db.tmp-") for p in synced[:renamed[0]])  # the folder
    assert os.path.basename(synced[-1]) == tmp_path.name                # then the parent folder


def test_overwrite_never_leaves_no_output(tmp_path, monkeypatch):
    """The old folder is never renamed away before the new one is in place: one exchange."""
    out = tmp_path / "x.db"
    with atomic_dir(out) as d:
        (d / "v").write_text("old")
    moved_away, real_replace = [], os.replace

    def replace(a, b):
        if str(a) == str(out):
            moved_away.append(a)
        return real_replace(a, b)
    monkeypatch.setattr(os, "replace", replace)
    with atomic_dir(out, overwrite=True) as d:
        (d / "v").write_text("new")
    assert (out / "v").read_text() == "new" and moved_away == []
    assert [p.name for p in tmp_path.iterdir()] == ["x.db"]


def test_fallback_kill_between_renames_is_repaired(tmp_path, monkeypatch):
    """Without RENAME_EXCHANGE: killed after moving the old folder aside, the next write puts
    it back, so a complete output is under the final name again."""
    out = tmp_path / "x.db"
    with atomic_dir(out) as d:
        (d / "v").write_text("old")
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real_replace, calls = os.replace, []

    def replace(a, b):
        calls.append(a)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the kill, between the two renames
        return real_replace(a, b)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(out, overwrite=True) as d:
            (d / "v").write_text("new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert not out.exists()
    monkeypatch.setattr(atomic, "_TOKEN", "00000000")  # the next process (same pid, as in a container)
    remove_stale(out)
    assert (out / "v").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.db"]
