"""LSP_train.py across two hosts: two network namespaces joined by a veth pair (addresses of
their own, 10.77.0.1 and 10.77.0.2, reachable only from the two namespaces), one
`torchrun --nnodes 2 --node_rank 0|1 --master_addr 10.77.0.1` in each, gloo over that link.
The per-step losses and token counts must equal those of the same job as 2 processes on one host:
rendezvous, addressing and the summed gradients work across hosts. Needs root (ip netns).
"""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from train_helpers import read_log

REPO = Path(__file__).resolve().parents[1]
ADDRS = ("10.77.0.1", "10.77.0.2")

pytestmark = [pytest.mark.distributed, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (ip netns add)")]


def _ip(*args, ns=None):
    cmd = ["ip"] + (["netns", "exec", ns, "ip"] if ns else []) + list(args)
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@pytest.fixture
def two_hosts():
    """Namespaces "<tag>0" and "<tag>1", veth "<tag>v0" in the first and "<tag>v1" in the second;
    yields [(namespace, interface, address)] and deletes the namespaces (and so the pair) after."""
    if shutil.which("ip") is None:
        pytest.fail("ip not found: apt-get install iproute2")
    tag = "dgpt%d" % (os.getpid() % 100000)  # unique per run; interface names stay under 16 bytes
    hosts = [(f"{tag}n{i}", f"{tag}v{i}", ADDRS[i]) for i in range(2)]
    etc = [Path("/etc/netns") / ns for ns, _, _ in hosts]
    try:
        for (ns, _, _), d in zip(hosts, etc):
            _ip("netns", "add", ns)
            # `ip netns exec` mounts these over /etc/hosts and /etc/resolv.conf: c10d's reverse
            # lookups of the peers' addresses answer at once instead of timing out on a DNS
            # server the namespace cannot reach
            d.mkdir(parents=True, exist_ok=True)
            (d / "hosts").write_text("127.0.0.1 localhost\n" + "".join(
                f"{a} {tag}-host{i}\n" for i, a in enumerate(ADDRS)))
            (d / "resolv.conf").write_text("")
        _ip("link", "add", hosts[0][1], "netns", hosts[0][0], "type", "veth", "peer", "name", hosts[1][1],
            "netns", hosts[1][0])
        for ns, dev, addr in hosts:
            _ip("addr", "add", addr + "/24", "dev", dev, ns=ns)
            _ip("link", "set", dev, "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
        yield hosts
    finally:
        for (ns, _, _), d in zip(hosts, etc):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            Path("/etc/netns").rmdir()  # when this test made it (and nothing else is in it)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert tag not in left, left


@pytest.fixture(scope="module")
def db(golden, tmp_path_factory):
    from lsp_data.prepro import build_db
    path, _ = build_db(golden / "train" / "train.tsv", tmp_path_factory.mktemp("db") / "train.128len.db",
                       max_seq_len=128, progress=False)
    return Path(path)


def _train_args(golden, db, out):
    return [str(x) for x in [REPO / "LSP_train.py", "--model_name_or_path", golden / "model",
                             "--init_checkpoint", golden / "model" / "init.pkl", "--train_input_file", db,
                             "--eval_input_file", golden / "train" / "eval.tsv", "--output_dir", out,
                             "--train_batch_size", "4", "--gradient_accumulation_steps", "1",
                             "--num_optim_steps", "4", "--valid_step", "4", "--warmup_steps", "2",
                             "--eval_batch_size", "8", "--learning_rate", "1e-3", "--fp16", "false",
                             "--pbar", "false", "--skip_eval", "--device", "cpu"]]


def _env(**kw):
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **kw)


def _losses(out: Path):
    run = next(out.iterdir())
    rows = read_log(run / "train_log.txt")
    assert len(rows) == 5, rows  # header + 4 steps
    return [r[:7] for r in rows[1:]]  # epoch, step, ..., loss, ppl, tokens: all but the times


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_hosts_train_like_one_host_with_two_processes(two_hosts, golden, db, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    one = subprocess.run(torchrun + ["--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                                     "--master_port", str(_free_port())] + _train_args(golden, db, tmp_path / "one"),
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]

    procs = []
    for rank, (ns, dev, _) in enumerate(two_hosts):
        cmd = ["ip", "netns", "exec", ns] + torchrun + [
            "--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(rank), "--master_addr", ADDRS[0],
            "--master_port", "29531"] + _train_args(golden, db, tmp_path / f"node{rank}")
        # gloo binds to the veth's address, not to what the host name resolves to
        procs.append(subprocess.Popen(cmd, env=_env(GLOO_SOCKET_IFNAME=dev), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    assert "2gpu" in next((tmp_path / "node0").iterdir()).name  # both nodes' ranks in one job
    assert not (tmp_path / "node1").exists() or not any((tmp_path / "node1").iterdir())  # rank 1 writes nothing
    two = _losses(tmp_path / "node0")
    assert two == _losses(tmp_path / "one")
    assert float(two[-1][3]) != float(two[0][3])  # it trained
