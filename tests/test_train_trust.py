"""The trainer off the happy path: self-describing run folders, one writer per folder, disk full,
a resume that does not fit, a corrupt DB chunk, SIGINT/SIGTERM, leftovers, no empty folders."""
import dbm.dumb
import errno
import json
import os
import shelve
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gpt2_training.loop as loop
import LSP_train
from gpt2_training import rundir
from gpt2_training.args import UsageError
from gpt2_training.failures import TrainingDiverged, failure
from gpt2_training.logs import pbar_postfix
from lsp_model.checkpoint import load_model
from lsp_model.tokenizer import load_tokenizer, tokenizer_identity
from train_helpers import ListLoader, read_log, synthetic_batches, tiny_args

TESTS = Path(__file__).resolve().parent


def batches(n=3, seed=0):
    return synthetic_batches(n, 4, 24, 256, seed=seed)


def model_dir(tmp: Path, name: str, **cfg) -> Path:
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"n_layer": 1, "n_embd": 32, "n_head": 4, "n_positions": 64,
                                               "vocab_size": 256} | cfg))
    return d


def cli(argv, capsys, monkeypatch, loader=None):
    """LSP_train.main in-process, with the in-memory loader in place of the DB's; (exit code, stderr lines)."""
    if loader is not None:
        monkeypatch.setattr(loop, "make_loaders", lambda *a: (loader, None))
    try:
        LSP_train.main([str(x) for x in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


def argv_of(tmp: Path, mdir: Path, *extra):
    return ["--model_name_or_path", mdir, "--train_input_file", "unused.db", "--output_dir", tmp / "out",
            "--train_batch_size", 8, "--gradient_accumulation_steps", 2, "--learning_rate", 1e-3,
            "--num_optim_steps", 6, "--valid_step", 2, "--warmup_steps", 4, "--fp16", "false", "--pbar", "false",
            "--max_seq_length", 64, "--skip_eval", *extra]


def test_run_folder_describes_itself(tmp_path):
    # 128 wide with 4 heads: a loader guessing 64-wide heads would build 2 heads, same tensor shapes
    mdir = model_dir(tmp_path, "m128", n_embd=128, n_head=4)
    res = loop.train(tiny_args(tmp_path, model_name_or_path=mdir, num_optim_steps=2, valid_step=2),
                     ListLoader(batches()))
    run = Path(res["run_dir"])
    ids = torch.randint(0, 256, (2, 12))
    want = res["model"].eval()(ids).logits
    for path in (run, run / "GP2-pretrain-step-2.pkl"):
        m = load_model(path).eval()
        assert m.config.n_head == 4 and m.config.n_embd == 128
        torch.testing.assert_close(m(ids).logits, want, rtol=1e-6, atol=1e-5)
    assert tokenizer_identity(load_tokenizer(run)) == tokenizer_identity(load_tokenizer(mdir))
    assert not (run / rundir.LOCK).exists()  # released at the end


def test_two_runs_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(loop.time, "strftime", lambda fmt, *a: "2026-01-01000000")
    a = loop.train(tiny_args(tmp_path, num_optim_steps=2, valid_step=2), ListLoader(batches()))
    b = loop.train(tiny_args(tmp_path, num_optim_steps=2, valid_step=2), ListLoader(batches()))
    assert a["run_dir"] != b["run_dir"] and Path(b["run_dir"]).name == Path(a["run_dir"]).name + "-2"
    assert len(read_log(Path(a["run_dir"]) / "train_log.txt")) == 3  # not interleaved with b's rows


def test_lock_refuses_a_second_writer_and_takes_over_stale_locks(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with rundir.run_lock(run):
        with pytest.raises(UsageError, match=rf"in use by pid {os.getpid()} on host {socket.gethostname()}"):
            with rundir.run_lock(run):
                pass
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / rundir.LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "x"}))
    with rundir.run_lock(run) as lock:  # its holder is gone: taken over, not blocking forever
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    (run / rundir.LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}))
    with pytest.raises(UsageError, match="in use by pid 1 on host elsewhere"):
        with rundir.run_lock(run):
            pass


def test_resume_takes_the_lock(tmp_path, capsys, monkeypatch):
    mdir = model_dir(tmp_path, "m")
    code, _ = cli(argv_of(tmp_path, mdir, "--stop_after_steps", 2), capsys, monkeypatch, ListLoader(batches()))
    run = next((tmp_path / "out").iterdir())
    with rundir.run_lock(run):
        code, err = cli(argv_of(tmp_path, mdir, "--resume_from_checkpoint", "last"), capsys, monkeypatch)
    assert code == 2 and len(err) == 1 and f"in use by pid {os.getpid()}" in err[0]


def test_resume_into_a_config_that_does_not_fit(tmp_path, capsys, monkeypatch):
    code, _ = cli(argv_of(tmp_path, model_dir(tmp_path, "m"), "--stop_after_steps", 2), capsys, monkeypatch,
                  ListLoader(batches()))
    assert code == 0
    run = next((tmp_path / "out").iterdir())
    resume = ("--resume_from_checkpoint", "last")
    code, err = cli(argv_of(tmp_path, model_dir(tmp_path, "heads", n_head=2), *resume), capsys, monkeypatch)
    assert code == 2 and len(err) == 1 and "n_head 4 vs 2" in err[0] and "config.json" in err[0]
    (run / "config.json").unlink()  # a run folder of an older version: the tensors still decide
    code, err = cli(argv_of(tmp_path, model_dir(tmp_path, "wide", n_embd=16), *resume), capsys, monkeypatch)
    assert code == 2 and len(err) == 1 and "n_embd=16" in err[0] and "Traceback" not in err[0]
    assert not (run / "config.json").exists()  # the misfit did not describe the run folder wrongly


def test_disk_full_while_saving_keeps_the_previous_pair(tmp_path, capsys, monkeypatch):
    real_save = torch.save

    class Full:  # a file on a full disk: the first large write fails with ENOSPC
        def __init__(self, f):
            self.f = f

        def write(self, b):
            if len(b) > 64:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(b)

        def flush(self):
            self.f.flush()

    def save(obj, f, *a, **k):
        full = isinstance(obj, dict) and obj.get("global_step") == 4
        return real_save(obj, Full(f) if full else f, *a, **k)
    monkeypatch.setattr(torch, "save", save)
    code, err = cli(argv_of(tmp_path, model_dir(tmp_path, "m")), capsys, monkeypatch, ListLoader(batches()))
    run = next((tmp_path / "out").iterdir())
    assert code == 4 and len(err) == 1, err
    assert f"cannot write {run / 'GP2-pretrain-step-4.resume.pt'}: no space left on device" in err[0]
    assert "GP2-pretrain-step-2.resume.pt stays intact" in err[0] and "--resume_from_checkpoint last" in err[0]
    assert sorted(p.name for p in run.glob("GP2-*")) == ["GP2-pretrain-step-2.pkl", "GP2-pretrain-step-2.resume.pt"]
    assert not list(run.glob(".*.tmp-*"))
    monkeypatch.setattr(torch, "save", real_save)
    code, _ = cli(argv_of(tmp_path, model_dir(tmp_path, "m"), "--resume_from_checkpoint", "last"), capsys,
                  monkeypatch, ListLoader(batches()))
    assert code == 0 and (run / "GP2-pretrain-step-6.resume.pt").is_file()


@pytest.fixture(scope="module")
def gpt2_db(tmp_path_factory):
    """A real 5-chunk DB (GPT-2 BPE) and a model folder that fits it."""
    from lsp_data.prepro import build_db
    tmp = tmp_path_factory.mktemp("db")
    tsv = tmp / "train.tsv"
    tsv.write_text("".join(f"0.0 hello there number {i}\t1.0 hi, how are you {i}?\n" for i in range(40)))
    db, _ = build_db(tsv, tmp / "train.64len.db", max_seq_len=64, chunk_size=8, progress=False)
    return Path(db), model_dir(tmp, "m", vocab_size=50257)


def test_corrupt_db_chunk_met_mid_training(gpt2_db, tmp_path, capsys, monkeypatch):
    from lsp_data.loader import BucketingDataLoader
    db, mdir = gpt2_db
    bad = tmp_path / db.name
    bad.mkdir()
    for f in db.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    last_chunk = BucketingDataLoader(bad, 2, 64, seed=42).state_dict()["chunk_order"][-1]
    with shelve.Shelf(dbm.dumb.open(str(bad / "db"), "w")) as sh:
        sh[last_chunk] = b"\x1f\x8b truncated"
    argv = argv_of(tmp_path, mdir, "--train_input_file", bad, "--train_batch_size", 2,
                   "--gradient_accumulation_steps", 1, "--num_optim_steps", 100)
    code, err = cli(argv, capsys, monkeypatch)
    assert code == 2 and len(err) == 1, err
    assert f"{bad}: {last_chunk} is not gzip-compressed" in err[0] and "met after update 16" in err[0]
    assert "GP2-pretrain-step-16.resume.pt" in err[0] and "--resume_from_checkpoint last" in err[0]


SIGNAL_SCRIPT = """
import sys, time
sys.path[:0] = [{repo!r}, {tests!r}]
import torch
torch.set_num_threads(1)
import gpt2_training.loop as loop
import LSP_train
from train_helpers import ListLoader, synthetic_batches

class Slow(ListLoader):  # slow after the first checkpoint, so the signal comes mid-training
    def __iter__(self):
        for b in super().__iter__():
            if self.epoch > 0 or self.offset > 4:
                time.sleep(0.5)
            yield b
loop.make_loaders = lambda *a: (Slow(synthetic_batches(3, 4, 24, 256)), None)
LSP_train.main({argv!r})
"""


def test_sigterm_in_a_real_process_stops_with_one_line(tmp_path, repo_dir):
    argv = [str(x) for x in argv_of(tmp_path, model_dir(tmp_path, "m"), "--num_optim_steps", 40)]
    script = SIGNAL_SCRIPT.format(repo=str(repo_dir), tests=str(TESTS), argv=argv)
    p = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list((tmp_path / "out").glob("*/GP2-pretrain-step-2.resume.pt")) and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)  # what torchrun, kill and job schedulers send
    err = p.communicate(timeout=120)[1].strip().splitlines()
    assert p.returncode == 143, err[-5:]
    run = next((tmp_path / "out").iterdir())
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("LSP_train.py: error: interrupted at update ")
    assert err[-1].endswith(f"; the last checkpoint is step 2 in {run}; resume with --resume_from_checkpoint last")
    assert not (run / rundir.LOCK).exists()


class SignalAt(ListLoader):
    """Sends `sig` to this process when batch `at` of the first epoch is taken."""

    def __init__(self, batches, sig, at):
        super().__init__(batches)
        self.sig, self.at = sig, at

    def __iter__(self):
        for b in super().__iter__():
            if self.epoch == 0 and self.offset == self.at:
                os.kill(os.getpid(), self.sig)
            yield b


def test_ctrl_c_mid_training_then_resume_equals_a_straight_run(tmp_path, capsys, monkeypatch):
    mdir = model_dir(tmp_path, "m")
    # micro-batches 1-4 = updates 1-2 and the step-2 checkpoint; Ctrl-C when the 6th is taken
    code, err = cli(argv_of(tmp_path, mdir), capsys, monkeypatch, SignalAt(batches(8), signal.SIGINT, 6))
    run = next((tmp_path / "out").iterdir())
    assert code == 130 and err[-1] == (f"LSP_train.py: error: interrupted at update 2; the last checkpoint is "
                                       f"step 2 in {run}; resume with --resume_from_checkpoint last")
    code, _ = cli(argv_of(tmp_path, mdir, "--resume_from_checkpoint", "last"), capsys, monkeypatch,
                  ListLoader(batches(8)))
    straight = loop.train(tiny_args(tmp_path / "s", num_optim_steps=6, valid_step=2, model_name_or_path=mdir,
                                    warmup_steps=4), ListLoader(batches(8)))
    rows = [[r[:-1] for r in read_log(Path(d) / "train_log.txt")] for d in (run, straight["run_dir"])]
    assert code == 0 and rows[0] == rows[1] and len(rows[0]) == 7


def test_interrupt_before_the_first_update_leaves_no_folder(tmp_path, capsys, monkeypatch):
    """Only the run's own scaffolding (config, tokenizer, header-only logs, lock): removed."""
    code, err = cli(argv_of(tmp_path, model_dir(tmp_path, "m"), "--valid_step", 5), capsys, monkeypatch,
                    SignalAt(batches(), signal.SIGINT, 1))
    assert code == 130 and err[-1] == ("LSP_train.py: error: interrupted at update 0, before the first checkpoint; "
                                       "nothing to resume (the run folder held only its own scaffolding and is "
                                       "removed)")
    assert list((tmp_path / "out").iterdir()) == []


def test_diverged_before_the_first_checkpoint_leaves_no_folder(tmp_path, monkeypatch):
    class NanLoss(loop.LMLoss):
        def forward(self, *a, **k):
            loss, ppl = super().forward(*a, **k)
            return loss * float("nan"), ppl
    monkeypatch.setattr(loop, "LMLoss", NanLoss)
    with pytest.raises(TrainingDiverged, match="none saved yet") as e:
        loop.train(tiny_args(tmp_path), ListLoader(batches()))
    assert failure(e.value) == 3 and list((tmp_path / "out").iterdir()) == []


def test_resume_removes_leftovers_of_a_killed_save(tmp_path):
    kw = dict(num_optim_steps=4, valid_step=2)
    res = loop.train(tiny_args(tmp_path, stop_after_steps=2, **kw), ListLoader(batches()))
    run = Path(res["run_dir"])
    (run / ".GP2-pretrain-step-4.pkl.tmp-abc123").write_bytes(b"half a checkpoint")
    (run / ".GP2-pretrain-step-4-hf.tmp-def456").mkdir()
    (run / ".GP2-pretrain-step-4-hf.tmp-def456" / "model.safetensors").write_bytes(b"half")
    res = loop.train(tiny_args(tmp_path, resume_from_checkpoint="last", **kw), ListLoader(batches()))
    assert res["global_step"] == 4 and not list(run.glob(".*tmp-*"))


def test_progress_bar_shows_cpu_speeds():
    assert pbar_postfix(500, 1.0, 3.0, 1.0, 1e-3, 0).startswith("tok/s: 500 ")  # was "0k"
    assert pbar_postfix(25000, 2.0, 3.0, 1.0, 1e-3, 0).startswith("tok/s: 12k ")
