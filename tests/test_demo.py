"""demo.py / pipeline: stage skipping and validation, error propagation, the report, and (slow)
the real pipeline end to end on a tiny model.

Fast tests run the pipeline against fake stage scripts (a fake repo whose prepro.py,
LSP_train.py, decode.py and `python -m dstc` write plausible outputs instantly), so they check
the orchestration only; the slow test runs the real command lines.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import demo
from pipeline import build, reddit_source, report, settings as demo_settings, stages
from pipeline.stages import DemoSettings, StageError

COMMON = """
import argparse, json, os, sys, time
from pathlib import Path
here = Path(__file__).resolve().parent
while not (here / "calls.txt").exists():
    here = here.parent
NAME = {name!r}
with open(here / "calls.txt", "a") as f:
    f.write(NAME + "\\n")
if os.environ.get("FAKE_FAIL") == NAME:
    print(f"{{NAME}}: error: something specific went wrong", file=sys.stderr)
    sys.exit(2)
p = argparse.ArgumentParser()
"""

FAKES = {
    "prepro.py": """
import dbm.dumb, gzip, shelve
p.add_argument("--corpus"); p.add_argument("--max_seq_len", type=int); p.add_argument("--workers")
p.add_argument("--overwrite", action="store_true")
a, _ = p.parse_known_args()
n = sum(1 for _ in open(a.corpus))
db = Path(a.corpus[:-4] + f".{a.max_seq_len}len.db")
if db.exists() and not a.overwrite:
    sys.exit("prepro: error: DB exists")
db.mkdir(exist_ok=True)
with shelve.Shelf(dbm.dumb.open(str(db / "db"), "n"), protocol=4) as sh:
    sh["chunk_0"] = gzip.compress(b"[]")
(db / "meta.json").write_text(json.dumps({"n_example": n, "chunk_size": 65536, "max_seq_len": a.max_seq_len,
                                          "chunks": {"chunk_0": {"n": n}}}))
""",
    "LSP_train.py": """
import signal
p.add_argument("--output_dir"); p.add_argument("--num_optim_steps", type=int); p.add_argument("--valid_step", type=int)
p.add_argument("--model_name_or_path"); p.add_argument("--learning_rate"); p.add_argument("--resume_from_checkpoint")
a, _ = p.parse_known_args()
assert (Path(a.model_name_or_path) / "config.json").is_file()
with open(here / "resumes.txt", "a") as f:
    f.write(f"{a.resume_from_checkpoint}\\n")
if a.resume_from_checkpoint:
    run = Path(a.resume_from_checkpoint)
    start = max(int(p.name.split("-")[-1].split(".")[0]) for p in run.glob("*.resume.pt"))
    for name in ("train_log.txt", "eval_log.txt"):  # as LSP_train: rows after the checkpoint go
        rows = (run / name).read_text().splitlines()
        (run / name).write_text("\\n".join(r for r in rows if not r[0].isdigit() or int(r.split(",")[1]) <= start + 1) + "\\n")
else:
    run = Path(a.output_dir) / f"GPT2.{a.learning_rate}.8.0gpu.{time.time_ns()}"
    run.mkdir(parents=True)
    (run / "train_log.txt").write_text("epoch,global_step,step,mean_loss,mean_ppl,n_token_real,n_token_total,epoch_time\\n")
    (run / "eval_log.txt").write_text("epoch,global_step,step,eval_loss,eval_ppl\\n")
    start = 0
for s in range(start + 1, a.num_optim_steps + 1):
    with open(run / "train_log.txt", "a") as f:
        f.write(f"1,{s + 1},{s + 1},{10 - 4 * s / a.num_optim_steps},{2.0 ** (10 - s)},10,16,{s}\\n")
    if s % a.valid_step == 0:
        with open(run / "eval_log.txt", "a") as f:
            f.write(f"1,{s + 1},{s + 1},{9 - 3 * s / a.num_optim_steps},{2.0 ** 5}\\n")
        if not os.environ.get("FAKE_NO_CKPT"):
            (run / f"GP2-pretrain-step-{s}.pkl").write_bytes(b"weights")
            (run / f"GP2-pretrain-step-{s}.resume.pt").write_bytes(b"state")
    if str(s) == os.environ.get("FAKE_CTRL_C_AT"):  # the user presses Ctrl-C: the demo gets SIGINT
        os.kill(os.getppid(), signal.SIGINT)
        sys.exit(130)
""",
    "decode.py": """
p.add_argument("--input"); p.add_argument("--output"); p.add_argument("--model")
a, _ = p.parse_known_args()
assert Path(a.model).is_file()
n = sum(1 for _ in open(a.input))
Path(a.output).write_text("".join(f"i am reply {i} .\\n" for i in range(n - int(os.environ.get("FAKE_SHORT", 0)))))
""",
    "dstc/__main__.py": """
p.add_argument("--refs"); p.add_argument("--hyp"); p.add_argument("--json"); p.add_argument("--no-meteor", action="store_true")
a, _ = p.parse_known_args()
n = sum(1 for _ in open(a.refs))
Path(a.json).write_text(json.dumps({"n_lines": n, "nist": [1.1, 1.2, 1.3, 1.4], "bleu": [0.3, 0.2, 0.1, 0.05],
    "meteor": None if a.no_meteor else 0.07, "entropy": [4, 5, 6, 7], "distinct": [0.1, 0.3], "avg_len": 5.0}))
""",
}


@pytest.fixture()
def fake_repo(tmp_path):
    repo = tmp_path / "fakerepo"
    (repo / "dstc").mkdir(parents=True)
    (repo / "dstc" / "__init__.py").write_text("")
    (repo / "calls.txt").write_text("")
    (repo / "resumes.txt").write_text("")
    for rel, body in FAKES.items():
        name = "dstc" if rel.startswith("dstc") else rel[:-3]
        (repo / rel).write_text(COMMON.format(name=name) + textwrap.dedent(body))
    return repo


def settings(fake_repo, tmp_path, **kw):
    base = dict(out=tmp_path / "out", data="dummy", steps=8, n_test=6, repo=fake_repo, quiet=True, meteor=False,
                threads=1, bf16=False)
    return DemoSettings(**{**base, **kw})


def calls(fake_repo):
    out = (fake_repo / "calls.txt").read_text().split()
    (fake_repo / "calls.txt").write_text("")
    return out


def test_pipeline_runs_then_skips(fake_repo, tmp_path, capsys):
    s = settings(fake_repo, tmp_path)
    summary = stages.run_demo(s)
    assert calls(fake_repo) == ["prepro", "LSP_train", "decode", "dstc", "decode", "dstc"]
    out = tmp_path / "out"
    assert (out / "report.md").is_file() and (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "model" / "config.json").read_text()) == stages.tiny_config()
    assert summary["metrics"]["greedy"]["n_lines"] == 6
    assert summary["loss"]["last_mean_loss"] < summary["loss"]["first_mean_loss"]
    text = (out / "report.md").read_text()
    assert "| greedy | 1.2000 |" in text and "| sample | 1.2000 |" in text and "i am reply 0 ." in text
    assert "6 held-out contexts" in text
    # evals every 2 updates of 8, labelled with the update number (not the log's update + 1)
    assert [ln for ln in text.splitlines() if "held-out loss after update" in ln][0].startswith(
        "- held-out loss after update 2:")
    assert "after update 8: " in text
    capsys.readouterr()

    stages.run_demo(s)  # everything is there and valid: nothing runs
    assert calls(fake_repo) == []
    printed = capsys.readouterr().out
    assert printed.count("skipped") == 7  # data, prepro, train, 2 decodes, 2 evals


def test_changed_settings_and_damaged_outputs_rerun(fake_repo, tmp_path):
    stages.run_demo(settings(fake_repo, tmp_path))
    calls(fake_repo)
    stages.run_demo(settings(fake_repo, tmp_path, steps=12))  # new run, new hypotheses
    assert calls(fake_repo) == ["LSP_train", "decode", "dstc", "decode", "dstc"]
    hyp = tmp_path / "out" / "decode" / "sample.txt"
    hyp.write_text("\n".join(hyp.read_text().splitlines()[:-1]) + "\n")  # one line short
    stages.run_demo(settings(fake_repo, tmp_path, steps=12))
    assert calls(fake_repo) == ["decode", "dstc"]
    meta = next((tmp_path / "out" / "data").glob("*.db")) / "meta.json"
    meta.unlink()  # an interrupted prepro
    stages.run_demo(settings(fake_repo, tmp_path, steps=12))
    assert calls(fake_repo) == ["prepro", "LSP_train", "decode", "dstc", "decode", "dstc"]


@pytest.mark.parametrize("stage,name", [("prepro", "prepro"), ("LSP_train", "train"), ("decode", "decode_greedy"),
                                        ("dstc", "eval_greedy")])
def test_failing_stage_stops_with_its_message(fake_repo, tmp_path, monkeypatch, stage, name):
    monkeypatch.setenv("FAKE_FAIL", stage)
    s = settings(fake_repo, tmp_path)
    with pytest.raises(StageError) as e:
        stages.run_demo(s)
    msg = str(e.value)
    assert msg.startswith(f"{name} failed (exit status 2)")
    assert f"{stage}: error: something specific went wrong" in msg
    assert str(tmp_path / "out" / "logs" / f"{name}.log") in msg
    assert calls(fake_repo)[-1] == stage  # nothing ran after the failure


def test_demo_main_exit_status(fake_repo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_FAIL", "LSP_train")
    real = DemoSettings.__init__

    def with_fake_repo(self, *a, **kw):
        real(self, *a, **{**kw, "repo": fake_repo})
    monkeypatch.setattr(DemoSettings, "__init__", with_fake_repo)
    rc = demo.main(["--data", "dummy", "--steps", "8", "--n_test", "6", "--output_dir", str(tmp_path / "out"),
                    "--no_meteor", "--quiet", "--bf16", "false"])  # no precision timing on the fake repo
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("demo: error: train failed (exit status 2)")
    assert "LSP_train: error: something specific went wrong" in err


def test_train_without_checkpoint_is_an_error(fake_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_NO_CKPT", "1")
    with pytest.raises(StageError, match="run is incomplete .*no GP2-pretrain-step-8.pkl"):
        stages.run_demo(settings(fake_repo, tmp_path))


def test_short_hypothesis_file_is_an_error(fake_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SHORT", "2")
    with pytest.raises(StageError, match="greedy.txt has 4 lines, expected 6"):
        stages.run_demo(settings(fake_repo, tmp_path))


def fake_make(tmp_path, monkeypatch, body: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make = bin_dir / "make"
    make.write_text(f"#!/bin/sh\necho make >> {tmp_path / 'make_calls.txt'}\n{body}\n")
    make.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "make_calls.txt"


def fake_dumps(fake_repo, size):
    folder = reddit_source.dumps_folder(fake_repo)
    folder.mkdir(parents=True)
    for name in reddit_source.missing_dumps(size, folder):
        (folder / name).write_bytes(b"")


def test_reddit_missing_dumps_stop_before_make(fake_repo, tmp_path, monkeypatch):
    made = fake_make(tmp_path, monkeypatch, "exit 2")
    with pytest.raises(StageError) as e:
        stages.run_demo(settings(fake_repo, tmp_path, data="small"))
    msg = str(e.value)
    assert "98 Reddit dump file(s) of SIZE=small are missing" in msg  # 49 months x RS/RC
    assert str(fake_repo / "reddit_extractor" / "data" / "reddit") in msg and "RS_2005-12.zst" in msg
    assert not made.exists()  # no make run, so no keys download attempted either
    assert calls(fake_repo) == []


def test_reddit_make_failure_is_said_once(fake_repo, tmp_path, monkeypatch, capsys):
    fake_dumps(fake_repo, "small")
    made = fake_make(tmp_path, monkeypatch, "echo 'FAILED: data/out/train/conv/2006-01.tsv.gz' >&2; exit 2")
    with pytest.raises(StageError) as e:
        stages.run_demo(settings(fake_repo, tmp_path, data="small", quiet=False))
    printed = capsys.readouterr().out
    assert made.read_text() == "make\n" and printed.count("FAILED: data/out") == 1
    assert "FAILED" not in str(e.value) and "data failed (exit status 2)" in str(e.value)
    assert "its output is above" in str(e.value) and "data.log" in str(e.value)


def test_reddit_empty_output_is_an_error(fake_repo, tmp_path, monkeypatch):
    fake_dumps(fake_repo, "full")
    fake_make(tmp_path, monkeypatch, 'for a in "$@"; do case "$a" in DATA=*) d="${a#DATA=}";; esac; done\n'
              'mkdir -p "$d"; : > "$d/train.tsv"')  # "succeeds" but writes an empty train.tsv, as the original could
    with pytest.raises(StageError, match=r"train.tsv: make exited 0 but wrote no training lines"):
        stages.run_demo(settings(fake_repo, tmp_path, data="full"))


def test_reddit_split_held_out(tmp_path):
    raw = tmp_path / "raw.tsv"
    raw.write_text("".join(f"1.0 ctx {i} EOS 0.0 more {i}\t1.0 reply {i}\n" for i in range(500)))
    files = stages.data_files(DemoSettings(out=tmp_path / "o"))
    files["train"].parent.mkdir(parents=True)
    st = reddit_source.split_held_out(raw, files, n_test=20, seed=1)
    train = files["train"].read_text().splitlines()
    refs = [ln.split("\t") for ln in files["refs"].read_text().splitlines()]
    assert st["test_examples"] == len(refs) > 5 and len(train) + len(refs) == 500
    for ctx, ref in refs:
        i = ref.split()[-1]
        assert ctx == f"ctx {i} EOS more {i}" and ref == f"reply {i}"  # weights stripped
        assert not any(ln.endswith(f"\t1.0 reply {i}") for ln in train)


def run_dirs(tmp_path):
    return sorted((tmp_path / "out" / "train").glob("GPT2.*"))


def test_ctrl_c_resumes_training_from_its_checkpoint(fake_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_CTRL_C_AT", "5")  # checkpoints at updates 2 and 4 (valid_step 2 of 8)
    with pytest.raises(stages.Interrupted) as e:
        stages.run_demo(settings(fake_repo, tmp_path))
    first = run_dirs(tmp_path)
    assert len(first) == 1 and f"resumes from its checkpoint of update 4 in {first[0]}" in str(e.value)
    monkeypatch.delenv("FAKE_CTRL_C_AT")
    calls(fake_repo)
    summary = stages.run_demo(settings(fake_repo, tmp_path))
    assert calls(fake_repo) == ["LSP_train", "decode", "dstc", "decode", "dstc"]  # data and DB kept
    assert (fake_repo / "resumes.txt").read_text().splitlines() == ["None", str(first[0])]
    assert run_dirs(tmp_path) == first and summary["run_dir"] == str(first[0])
    log = (first[0] / "train_log.txt").read_text().splitlines()
    assert [int(r.split(",")[1]) - 1 for r in log[1:]] == list(range(1, 9))  # every update once


def test_ctrl_c_before_any_checkpoint_leaves_no_run_folder(fake_repo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_CTRL_C_AT", "1")
    monkeypatch.setattr(DemoSettings, "__init__", _with_repo(fake_repo))
    rc = demo.main(["--data", "dummy", "--steps", "8", "--n_test", "6", "--output_dir", str(tmp_path / "out"),
                    "--no_meteor", "--quiet", "--threads", "1", "--bf16", "false"])
    err = capsys.readouterr().err
    assert rc == 130 and run_dirs(tmp_path) == []
    assert err.startswith("demo: interrupted during training; no checkpoint was saved yet, so training starts "
                          "again from update 0; run the same command again to continue")
    monkeypatch.delenv("FAKE_CTRL_C_AT")
    stages.run_demo(settings(fake_repo, tmp_path))
    assert (fake_repo / "resumes.txt").read_text().splitlines() == ["None", "None"]
    assert len(run_dirs(tmp_path)) == 1


def test_train_watch_says_time_left(tmp_path, monkeypatch):
    run = tmp_path / "train" / "GPT2.x"
    run.mkdir(parents=True)
    log = run / "train_log.txt"
    log.write_text("epoch,global_step,step,mean_loss,mean_ppl,n_token_real,n_token_total,epoch_time\n")
    clock = [1000.0]
    monkeypatch.setattr(stages.time, "time", lambda: clock[0])
    watch = stages.TrainWatch(tmp_path / "train", [], steps=100)
    said = []
    for update in range(1, 101):
        with open(log, "a") as f:
            f.write(f"1,{update + 1},{update + 1},5.0,150.0,10,16,1.0\n")
        clock[0] += 2.0  # 2 s per update
        if (line := watch()) is not None:
            said.append(line)
    assert said[0] == "train: update 6/100, 2.00 s/update measured: about 3.1 min of training left"
    assert said[1].startswith("train: update 10/100") and said[-1].startswith("train: update 100/100")
    assert len(said) == 11


def test_db_check_uses_lsp_data_rule(tmp_path):
    """6 features at chunk size 4 make ONE chunk by the original's rule; the old demo check
    expected ceil(6/4) = 2 and rejected a correct DB."""
    from lsp_data.db import ChunkWriter, write_meta
    db = tmp_path / "train.128len.db"
    db.mkdir()
    w = ChunkWriter(db, chunk_size=4)
    w.start_line()
    w.extend([(8, '"input_ids": [1], "x": 0}')] * 6)
    chunks = w.close()
    assert len(chunks) == 1
    write_meta(db, {"n_example": 6, "chunk_size": 4, "max_seq_len": 128, "chunks": chunks})
    assert stages.db_problem(db, 128) is None
    assert "max_seq_len" in stages.db_problem(db, 64)
    meta = json.loads((db / "meta.json").read_text())
    write_meta(db, meta | {"chunks": meta["chunks"] | {"chunk_1": {"n": 0, "input_len_counts": {}}}})
    assert "index (db.dir) disagrees with meta.json" in stages.db_problem(db, 128)
    (db / "meta.json").unlink()
    assert "no meta.json" in stages.db_problem(db, 128)


def test_free_cores(monkeypatch):
    from lsp_io import cpu
    stats = iter([{0: (100, 1000), 1: (100, 1000), 2: (0, 1000)},     # cpu 2: not ours
                  {0: (200, 1100), 1: (105, 1100), 2: (100, 1100)}])  # cpu 0 fully busy, cpu 1 idle
    monkeypatch.setattr(cpu, "allowed_cpus", lambda: [0, 1])
    monkeypatch.setattr(cpu, "_proc_stat", lambda: next(stats))
    free, cores, busy = cpu.free_cores(window=0)
    assert (free, cores) == (1, 2) and busy == pytest.approx(1.05)
    monkeypatch.setattr(cpu, "busy_cores", lambda cpus, window: 2.0)
    assert cpu.free_cores(window=0)[0] == 1  # never 0 threads


def test_flags_are_built_from_the_settings():
    a = demo.parse_args([])
    assert a == DemoSettings()  # every default lives in DemoSettings only
    b = demo.parse_args(["--learning_rate", "3e-4", "--output_dir", "x", "--no_meteor", "--threads", "2",
                         "--bf16", "true"])
    assert (b.lr, str(b.out), b.meteor, b.threads, b.bf16) == (3e-4, "x", False, 2, True)
    help_text = subprocess.run([sys.executable, "demo.py", "--help"], capture_output=True, text=True,
                               cwd=demo_settings.REPO).stdout
    assert "(default 500)" in help_text and "--learning_rate" in help_text


def _with_repo(fake_repo):
    real = DemoSettings.__init__

    def init(self, *a, **kw):
        real(self, *a, **{**kw, "repo": fake_repo})
    return init


def test_check_train_tsv(tmp_path):
    p = tmp_path / "train.tsv"
    p.write_text("")
    with pytest.raises(StageError, match="0 training lines"):
        stages.check_train_tsv(p, 1)
    p.write_text("0.0 a\t1.0 b\n0.0 no tab here\n")
    with pytest.raises(StageError, match=r"train.tsv:2: expected"):
        stages.check_train_tsv(p, 1)
    p.write_text("0.0 a\t1.0 b\n" * 3)
    assert stages.check_train_tsv(p, 3) == 3


def test_run_reports_a_missing_program(tmp_path):
    with pytest.raises(StageError, match="cannot run"):
        build.run(tmp_path, "x", [str(tmp_path / "no-such-program")], repo=tmp_path)


def test_cli_rejects_bad_combinations(capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(["--model_dir", "somewhere"])
    with pytest.raises(SystemExit):
        demo.parse_args(["--steps", "10", "--model", "small", "--config", "c.json"])
    s = demo.parse_args(["--steps", "20"])
    assert s.valid_step == 5 and s.data == "chitchat" and s.model == "none"
    assert demo.parse_args(["--steps", "7"]).valid_step == 7
    with pytest.raises(SystemExit):
        demo.parse_args(["--steps", "0"])


def test_model_offline_message(tmp_path, monkeypatch):
    import socket

    from lsp_model import download as dl
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/gpt2.bin"
    sock.close()
    monkeypatch.setitem(dl.GPT2_PRETRAINED_MODEL_ARCHIVE_MAP, "small", url)
    monkeypatch.setitem(dl.GPT2_HUB_MIRROR, "small", url)
    s = DemoSettings(out=tmp_path / "o", model="small", model_dir=tmp_path / "models")
    with pytest.raises(StageError) as e:
        stages.stage_model(s)
    assert str(tmp_path / "models" / "pytorch_model.bin") in str(e.value) and url in str(e.value)


# ---------------------------------------------------------------------------------------------
# report

def test_metrics_table_and_logs(tmp_path):
    res = {"n_lines": 3, "nist": [1.5, 2.25, 2.3, 2.31], "bleu": [0.2, 0.1234, 0.05, 0.0321], "meteor": None,
           "entropy": [3, 4, 5, 6.5], "distinct": [0.12, 0.345], "avg_len": 7.25}
    table = report.metrics_table({"greedy": res})  # the paper's columns, as python -m dstc prints them
    assert table.splitlines()[2] == "| greedy | 2.2500 | 2.3100 | 12.34% | 3.21% | n/a | 6.50 | 12.00% | 34.50% | 7.2 |"
    log = tmp_path / "train_log.txt"
    log.write_text("epoch,global_step,step,mean_loss,mean_ppl,n_token_real,n_token_total,epoch_time\n"
                   "1,2,2,10.5,36000,10,16,1.0\n1,3,3,9.5,13000,20,32,2.0\n1,4,4")  # half-written row
    rows = report.read_csv_log(log)
    assert [r["mean_loss"] for r in rows] == [10.5, 9.5]
    summary = report.loss_summary(rows, [{"global_step": 3, "eval_loss": 9.0, "eval_ppl": 8100.0}])
    # the logs' global_step column is update + 1 (the original's off-by-one); the report counts updates
    assert summary["first_step"] == 1 and summary["last_step"] == 2 and summary["eval"] == [(2, 9.0, 8100.0)]
    png = report.plot_loss(rows, [{"global_step": 3, "eval_loss": 9.0}], tmp_path / "c.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert report.plot_loss([], [], tmp_path / "none.png") is None


# ---------------------------------------------------------------------------------------------
# the real thing

TINY = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 128, "n_ctx": 128, "vocab_size": 50257}


def demo_cmd(repo_dir, cfg, out):
    return [sys.executable, str(repo_dir / "demo.py"), "--data", "dummy", "--steps", "12", "--config", str(cfg),
            "--n_test", "6", "--warmup_steps", "4", "--no_meteor", "--threads", "1", "--output_dir", str(out)]


def run_until_first_checkpoint_then_ctrl_c(cmd, out, repo_dir):
    """Start a real demo and SIGINT its process group (as a terminal's Ctrl-C does) once the
    first checkpoint is saved. Returns (exit code, what it printed)."""
    import signal
    import time
    proc = subprocess.Popen(cmd, cwd=repo_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 600
    while not list((out / "train").glob("GPT2.*/GP2-pretrain-step-3.resume.pt")) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    printed = proc.communicate(timeout=300)[0].decode()
    return proc.returncode, printed


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory, repo_dir):
    """One real demo on a tiny model, Ctrl-C'd during training and rerun to the end (shared by
    the slow tests below: one interrupted run costs less than a second whole demo)."""
    tmp = tmp_path_factory.mktemp("tiny_demo")
    cfg = tmp / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    out = tmp / "out"
    code, printed = run_until_first_checkpoint_then_ctrl_c(demo_cmd(repo_dir, cfg, out), out, repo_dir)
    runs = list((out / "train").glob("GPT2.*"))
    r = subprocess.run(demo_cmd(repo_dir, cfg, out), cwd=repo_dir, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return dict(cfg=cfg, out=out, interrupted=(code, printed, runs), rerun=r.stdout)


@pytest.mark.slow
def test_demo_end_to_end(tiny_demo, repo_dir):
    cfg, out = tiny_demo["cfg"], tiny_demo["out"]
    summary = json.loads((out / "summary.json").read_text())
    evals = summary["loss"]["eval"]
    assert [e[0] for e in evals] == [3, 6, 9, 12]  # labelled by update
    assert evals[-1][1] < evals[0][1] - 1.0  # the loss falls clearly
    for name in ("greedy", "sample"):
        assert len((out / "decode" / f"{name}.txt").read_text().splitlines()) == 6
        m = summary["metrics"][name]
        assert m["n_lines"] == 6 and len(m["bleu"]) == 4 and len(m["distinct"]) == 2
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Sample exchanges" in (out / "report.md").read_text()
    # a second run finds every stage done
    r2 = subprocess.run(demo_cmd(repo_dir, cfg, out), cwd=repo_dir, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0 and r2.stdout.count("skipped") == 7, r2.stdout[-2000:]


@pytest.mark.slow
def test_demo_ctrl_c_then_rerun_continues_exactly(tiny_demo, tmp_path, repo_dir):
    """The Ctrl-C'd demo exits 130 keeping its run folder; the rerun resumes that folder and ends
    with the held-out losses of the same training run uninterrupted (its own command line, from
    the demo's log, without the resume flag, into a fresh folder)."""
    code, printed, runs = tiny_demo["interrupted"]
    out = tiny_demo["out"]
    assert code == 130, printed[-3000:]
    assert len(runs) == 1 and "training resumes from its checkpoint of update" in printed
    assert f"train: resuming {runs[0]} from its checkpoint of update" in tiny_demo["rerun"]
    assert list((out / "train").glob("GPT2.*")) == runs
    cmd = (out / "logs" / "train.log").read_text().splitlines()[0].removeprefix("$ ").split()
    cmd = cmd[:cmd.index("--resume_from_checkpoint")]
    cmd[cmd.index("--output_dir") + 1] = str(tmp_path / "straight")
    r = subprocess.run(cmd + ["--threads", "1"], cwd=repo_dir, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    straight = next((tmp_path / "straight").glob("GPT2.*"))
    want = report.loss_summary(report.read_csv_log(straight / "train_log.txt"),
                               report.read_csv_log(straight / "eval_log.txt"))["eval"]
    got = json.loads((out / "summary.json").read_text())["loss"]["eval"]
    assert [e[0] for e in got] == [3, 6, 9, 12] and got == [list(e) for e in want]
