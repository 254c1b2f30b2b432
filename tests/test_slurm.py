"""`python -m reddit_extractor slurm submit` on a real one-node SLURM (munged, slurmctld, slurmd
started here, all state in one temporary folder), against the make run of the same months.

Months: the golden 2011-01 (train and test), a synthetic 2011-02 with keys that keep every
comment, and a 2011-03 whose comment dump is cut inside a zstd frame. Needs root (slurmd runs
the jobs as their user) and Debian's slurm-wlm and munge (.ci/run installs them).
"""
import collections
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a SLURM test cluster needs root (slurmd runs jobs as their user)")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "make")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(what, check, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class LocalSlurm:
    """munged + slurmctld + slurmd for this host, configured and run from one folder
    (../shared/docs/slurm-local.md). munged wants every folder above its socket searchable by all,
    so the folder is a fresh 0755 one under /tmp rather than pytest's 0700 tmp_path."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="dialogpt-slurm-"))
        self.dir.chmod(0o755)
        self.conf = self.dir / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def start(self):
        d = self.dir
        key_dir = d / "munge-key"
        key_dir.mkdir(mode=0o700)
        key = key_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sock = d / "munge.socket"
        subprocess.run(["munged", f"--key-file={key}", f"--socket={sock}", f"--pid-file={d / 'munged.pid'}",
                        f"--log-file={d / 'munged.log'}", f"--seed-file={d / 'munged.seed'}"], check=True)
        host = socket.gethostname().split(".")[0]
        mem = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") / 2 ** 20 * 0.8)
        for sub in ("state", "spool"):
            (d / sub).mkdir()
        self.conf.write_text(f"""ClusterName=dialogpt-test
SlurmctldHost={host}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=sched_min_interval=0,batch_sched_delay=0
ReturnToService=2
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={d / 'state'}
SlurmdSpoolDir={d / 'spool'}
SlurmctldPidFile={d / 'slurmctld.pid'}
SlurmdPidFile={d / 'slurmd.pid'}
SlurmctldLogFile={d / 'slurmctld.log'}
SlurmdLogFile={d / 'slurmd.log'}
NodeName={host} CPUs={os.cpu_count()} RealMemory={mem} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, env=self.env)
        subprocess.run(["slurmd", "-f", str(self.conf)], check=True, env=self.env)
        _wait_for("the node to be idle", lambda: subprocess.run(
            ["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True).stdout.strip() == "idle", 30)

    def stop(self):
        pids = []
        for name in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            try:
                pid = int((self.dir / name).read_text())
                os.kill(pid, 15)
                pids.append(pid)
            except (FileNotFoundError, ValueError, ProcessLookupError):
                pass
        for pid in pids:  # gone before the folder they write to is removed
            _wait_for(f"pid {pid} to exit", lambda: not Path(f"/proc/{pid}").exists(), 20)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm():
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: apt-get install slurm-wlm munge (.ci/run does)")
    cluster = LocalSlurm()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _synthetic_month(dumps: Path, keys: Path, month: str, seed: int):
    """A generated month and keys that keep all its comments (dep and keep), no discarded turns."""
    from make_reddit_month import generate
    generate(3000, dumps, month=month, seed=seed)
    import zstandard
    with open(dumps / f"RC_{month}.zst", "rb") as f:
        text = zstandard.ZstdDecompressor().stream_reader(f).read().decode()
    rows = [json.loads(line) for line in text.splitlines()]
    with gzip.open(keys / f"{month}.gz", "wt") as f:
        for c in rows:
            f.write(f"{c['link_id']}\tt1_{c['id']}\tdep\n{c['link_id']}\tt1_{c['id']}\tkeep\n")
    with gzip.open(keys / f"{month}-o.gz", "wt"):
        pass


@pytest.fixture(scope="module")
def months(golden, tmp_path_factory):
    """Make variables for dumps of 2011-01 (golden), 2011-02 and a corrupt 2011-03."""
    g = golden / "reddit" / "inputs"
    root = tmp_path_factory.mktemp("slurm_months")
    dumps, keys = root / "reddit", root / "keys"
    dumps.mkdir()
    keys.mkdir()
    for kind in ("RS", "RC"):
        shutil.copy(g / "reddit" / f"{kind}_2011-01.zst", dumps)
    for f in ("2011-01.gz", "2011-01-o.gz"):
        shutil.copy(g / "keys" / f, keys)
    _synthetic_month(dumps, keys, "2011-02", seed=1)
    _synthetic_month(dumps, keys, "2011-03", seed=2)
    rc = dumps / "RC_2011-03.zst"
    rc.write_bytes(rc.read_bytes()[: rc.stat().st_size // 2])  # cut inside a frame
    (keys / ".create").touch()
    return root, ["S=" + str(dumps), "K=" + str(keys),
                  "TEST_KEYS=" + str(g / "data" / "keys-test.gz"), "TEST_IDS=" + str(g / "test-multi-refs-ids.txt"),
                  "WORDS_BLOCKLIST=--bl_words " + str(g / "lists" / "words.blocklist.txt"),
                  "SUBREDDITS_BLOCKLIST=--bl_subreddits " + str(g / "lists" / "subreddits.blocklist.txt"),
                  "TEST_MONTHS=2011-01"]


def _submit(slurm, *args):
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "reddit_extractor", "slurm", "submit", "--wait", "--cpus", "1",
                        "--mem", "500M", "--time", "00:10:00", *map(str, args)],
                       env=dict(slurm.env, PYTHONPATH=str(REPO)), cwd=REPO, capture_output=True, text=True, timeout=300)
    print(f"submit {' '.join(map(str, args[:2]))}: {time.monotonic() - t:.1f} s")
    return r.returncode, r.stdout + r.stderr


@needs_root
def test_months_as_a_job_array_equal_the_make_run(slurm, months, golden, tmp_path):
    root, common = months
    two = "TRAIN_MONTHS=2011-01 2011-02"
    t = time.monotonic()
    made = subprocess.run(["make", "-C", str(REPO / "reddit_extractor"), "-j2", "train", "refs", two,
                           "T=" + str(tmp_path / "make_out"), "DATA=" + str(tmp_path / "make_data"), *common],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stdout + made.stderr
    print(f"make: {time.monotonic() - t:.1f} s")
    # the Makefile's disk savers: the skip lines (the original's stderr) gzipped, the extract
    # chunks gone once the month's conv file is written, stat.tsv kept as make's record
    month = tmp_path / "make_out" / "train"
    want = (golden / "reddit" / "runs" / "train" / "conv" / "2011-01.tsv.gz.stderr").read_text().splitlines()
    reasons = collections.Counter(line.split("\t")[1] for line in want if line.startswith("skip\t"))
    counts = (month / "conv" / "2011-01.tsv.gz.skips.tsv").read_text()
    assert counts == "".join(f"{k}\t{v}\n" for k, v in sorted(reasons.items())) and reasons
    left = sorted(p.name for p in (month / "extract" / "2011-01").iterdir())
    assert "stat.tsv" in left and not [n for n in left if n.startswith(("rc_sub", "rs_sub"))], left
    out, data = tmp_path / "slurm_out", tmp_path / "slurm_data"
    where = ["T=" + str(out), "DATA=" + str(data)]

    rc, log = _submit(slurm, "--goals", "train,refs", two, *where, *common)
    assert rc == 0, log
    assert "0 of 3 months already built, 3 to run" in log and "job array" in log
    summary = (out / "slurm" / "summary.txt").read_text()
    assert summary.startswith("months: 3 (3 done, 0 failed, 0 running, 0 pending)"), summary
    for name in ("train.tsv", "test.refs.txt", "test.scored_refs.txt"):
        assert (data / name).read_bytes() == (tmp_path / "make_data" / name).read_bytes(), name
    golden_train = (golden / "reddit" / "runs" / "train" / "train.tsv").read_bytes()
    train = (data / "train.tsv").read_bytes()
    assert train.startswith(golden_train) and len(train) > len(golden_train)  # 2011-01 as the original, then 2011-02
    assert (data / "test.refs.txt").read_bytes() == (golden / "reddit" / "runs" / "test" / "test.refs.txt").read_bytes()
    assert "--task=conv" in (out / "slurm" / "train-2011-02.log").read_text()  # the per-task log

    # resubmitted: every month is built, no array; the merge finds nothing to do
    stamps = {p: p.stat().st_mtime_ns for p in (out / "train" / "conv").iterdir()}
    rc, log = _submit(slurm, "--goals", "train,refs", two, *where, *common)
    assert rc == 0, log
    assert "3 of 3 months already built, 0 to run" in log and "job array" not in log
    assert {p: p.stat().st_mtime_ns for p in (out / "train" / "conv").iterdir()} == stamps
    assert (data / "train.tsv").read_bytes() == train

    # a third, corrupt month: only it runs, it fails with its error line, the merge never runs
    rc, log = _submit(slurm, "--goals", "train", "TRAIN_MONTHS=2011-01 2011-02 2011-03", *where, *common)
    assert rc == 1, log
    assert "2 of 3 months already built, 1 to run" in log
    summary = (out / "slurm" / "summary.txt").read_text()
    assert summary.startswith("months: 3 (2 done, 1 failed, 0 running, 0 pending)"), summary
    print(summary)
    failed = [line for line in summary.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 1 and failed[0].startswith("FAILED train-2011-03: error: "), summary
    assert "RC_2011-03.zst" in failed[0] and "train-2011-03.log" in failed[0]
    assert "train: not run (a month failed)" in summary and (data / "train.tsv").read_bytes() == train
    # the status command says the same from the files alone
    st = subprocess.run([sys.executable, "-m", "reddit_extractor", "slurm", "status", "--logs", str(out / "slurm")],
                        env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True)
    assert st.returncode == 1 and st.stdout == summary


def test_dry_run_shows_the_jobs_and_their_flags(tmp_path):
    """Without a cluster: what submit would send (one task per month, the merge after them)."""
    r = subprocess.run([sys.executable, "-m", "reddit_extractor", "slurm", "submit", "--dry_run", "--partition", "cpu",
                        "--time", "01:30:00", "--mem", "8G", "--cpus", "3", "--max_running", "16",
                        "--sbatch=--account=abc", "SIZE=full", "T=" + str(tmp_path / "out")],
                       env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"0 of 155 months already built, 155 to run; logs in {tmp_path / 'out' / 'slurm'}"
    jobs = [line.split() for line in lines if line.startswith("sbatch ")]
    assert len(jobs) == 4  # the months, train, refs, the summary
    months, train, refs, summary = jobs
    for job in jobs:
        assert job[job.index("--partition") + 1] == "cpu" and "--account=abc" in job
    assert months[months.index("--array") + 1] == "1-155%16" and months[months.index("--time") + 1] == "01:30:00"
    assert months[months.index("--mem") + 1] == "8G" and months[months.index("--cpus-per-task") + 1] == "3"
    for job, goal in ((train, "train"), (refs, "refs")):
        assert job[job.index("--dependency") + 1] == "afterok:JOB1" and job[-2:] == [goal, goal]
    assert summary[summary.index("--dependency") + 1] == "afterany:JOB1:JOB2:JOB3"
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_bad_make_variable_is_one_line():
    r = subprocess.run([sys.executable, "-m", "reddit_extractor", "slurm", "submit", "--dry_run", "SIZE"],
                       env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr == "error: 'SIZE': make variables are given as VAR=value\n"
