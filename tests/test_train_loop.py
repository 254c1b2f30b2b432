"""The training loop on a tiny model: exact resume, crash-safe saves, NaN stop, fp16/bf16,
DDP equivalence, CLI errors and config precedence."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import gpt2_training.loop as loop
from gpt2_training.args import UsageError, parse_args
from gpt2_training.optim import LossScaler
from lsp_data.prepro import build_db
from lsp_model.checkpoint import read_state_dict
from train_helpers import ListLoader, read_log, synthetic_batches, tiny_args

import LSP_train  # noqa: E402

TESTS = Path(__file__).resolve().parent


def batches(n=3, seed=0):
    return synthetic_batches(n, 4, 24, 256, seed=seed)


def rows(run_dir, name="train_log.txt"):
    return [r[:-1] if name == "train_log.txt" else r for r in read_log(Path(run_dir) / name)]  # drop epoch_time


def eval_batches():
    return [b + (None, None) for b in synthetic_batches(2, 4, 24, 256, seed=9)]


def test_exact_resume_equals_straight_run(tmp_path):
    kw = dict(num_optim_steps=12, valid_step=6, lr_schedule="BERT", skip_eval=False)
    a = loop.train(tiny_args(tmp_path / "a", **kw), ListLoader(batches()), eval_batches())
    b1 = loop.train(tiny_args(tmp_path / "b", stop_after_steps=6, **kw), ListLoader(batches()), eval_batches())
    assert b1["global_step"] == 6
    # a fresh loader object: its position comes from the resume state (update 6 = mid-epoch 4)
    b = loop.train(tiny_args(tmp_path / "b", resume_from_checkpoint="last", **kw), ListLoader(batches()),
                   eval_batches())
    assert b["run_dir"] == b1["run_dir"] and b["global_step"] == 12
    assert rows(a["run_dir"]) == rows(b["run_dir"])  # every loss/ppl/counter, bit for bit
    assert len(rows(b["run_dir"])) == 13
    assert rows(a["run_dir"], "eval_log.txt") == rows(b["run_dir"], "eval_log.txt")
    for (k, x), (k2, y) in zip(a["model"].state_dict().items(), b["model"].state_dict().items()):
        assert k == k2 and torch.equal(x, y), k
    cfg = json.loads((Path(b["run_dir"]) / "run_config.json").read_text())
    assert cfg["micro_batch"] == 4 and Path(b["run_dir"]).name.startswith("GPT2.0.001.4.0gpu.")


KILL_SCRIPT = """
import os, signal, sys
sys.path[:0] = [{repo!r}, {tests!r}]
import torch
torch.set_num_threads(1)
from pathlib import Path
import gpt2_training.checkpoint as C
from lsp_io.atomic import atomic_file
from train_helpers import ListLoader, synthetic_batches, tiny_args
import gpt2_training.loop as loop
orig = C.save_resume
def dying(run_dir, step, *a, **k):
    if step == 4:  # SIGKILL half way through writing the step-4 resume state
        with atomic_file(C.resume_path(run_dir, step)) as f:
            f.write(b"partial"); f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    return orig(run_dir, step, *a, **k)
C.save_resume = dying
loop.train(tiny_args(Path({tmp!r}), num_optim_steps=6, valid_step=2), ListLoader(synthetic_batches(3, 4, 24, 256)))
"""


def test_sigkill_during_save_keeps_previous_checkpoint(tmp_path, repo_dir):
    script = KILL_SCRIPT.format(repo=str(repo_dir), tests=str(TESTS), tmp=str(tmp_path))
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    run = next((tmp_path / "out").iterdir())
    assert (run / "GP2-pretrain-step-4.pkl").is_file()  # written, but its pair is incomplete
    assert not (run / "GP2-pretrain-step-4.resume.pt").exists()
    res = loop.train(tiny_args(tmp_path, num_optim_steps=6, valid_step=2, resume_from_checkpoint=str(run)),
                     ListLoader(synthetic_batches(3, 4, 24, 256)))
    assert res["global_step"] == 6
    log = read_log(run / "train_log.txt")
    assert [r[1] for r in log[1:]] == ["2", "3", "4", "5", "6", "7"]  # rows after step 2 replaced, not duplicated
    assert (run / "GP2-pretrain-step-6.resume.pt").is_file()


def test_nan_loss_stops_with_message_and_keeps_checkpoint(tmp_path, monkeypatch, capsys):
    class NanAt5(loop.LMLoss):
        calls = 0

        def forward(self, *a, **k):
            loss, ppl = super().forward(*a, **k)
            NanAt5.calls += 1
            return (loss * float("nan"), ppl) if NanAt5.calls == 5 else (loss, ppl)
    monkeypatch.setattr(loop, "LMLoss", NanAt5)
    args = tiny_args(tmp_path, num_optim_steps=6, valid_step=2)
    with pytest.raises(loop.TrainingDiverged, match=r"non-finite training loss .* at optimizer step 3 .*"
                                                     r"GP2-pretrain-step-2\.resume\.pt"):
        loop.train(args, ListLoader(batches()))
    run = next((tmp_path / "out").iterdir())
    assert not (run / "GP2-pretrain-step-4.pkl").exists()
    sd = read_state_dict(run / "GP2-pretrain-step-2.pkl")
    assert all(torch.isfinite(v).all() for v in sd.values())


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_runs_on_cpu_and_loss_falls(tmp_path, precision):
    extra = dict(fp16="true") if precision == "fp16" else dict(bf16="true", fp16="true", save_hf="true")
    res = loop.train(tiny_args(tmp_path, num_optim_steps=16, valid_step=16, lr_schedule="None", **extra),
                     ListLoader(batches()))
    log = read_log(Path(res["run_dir"]) / "train_log.txt")
    losses = [float(r[3]) for r in log[1:]]
    assert losses[-1] < losses[0] - 0.3
    sd = read_state_dict(Path(res["run_dir"]) / "GP2-pretrain-step-16.pkl")
    if precision == "fp16":
        assert log[0][-2:] == ["loss_scale", "n_skipped"] and log[-1][-2:] == ["65536.0", "0"]
        assert sd["transformer.wte.weight"].dtype == torch.float16  # as the original saved fp16 runs
        st = torch.load(Path(res["run_dir"]) / "GP2-pretrain-step-16.resume.pt", weights_only=True)
        assert st["model"]["transformer.wte.weight"].dtype == torch.float32  # fp32 master for resume
    else:
        assert log[0][-1] == "epoch_time" and sd["transformer.wte.weight"].dtype == torch.float32
        assert (Path(res["run_dir"]) / "GP2-pretrain-step-16-hf" / "model.safetensors").is_file()


def test_fp16_overflow_skips_steps_and_counts_them(tmp_path):
    res = loop.train(tiny_args(tmp_path, num_optim_steps=3, valid_step=3, fp16="true", loss_scale=1e30),
                     ListLoader(batches()))
    assert res["n_skipped"] == 3 and res["global_step"] == 3  # skipped steps still advance the counter
    assert read_log(Path(res["run_dir"]) / "train_log.txt")[-1][-1] == "3"


def test_dynamic_loss_scale_follows_apex():
    s = LossScaler()
    assert s.cur_scale == 2.0 ** 16
    s.update(overflow=True)
    assert s.cur_scale == 2.0 ** 15
    for _ in range(999):
        s.update(overflow=False)
    assert s.cur_scale == 2.0 ** 15
    s.update(overflow=False)
    assert s.cur_scale == 2.0 ** 16
    st = LossScaler(loss_scale=128)
    st.update(overflow=True)
    assert st.cur_scale == 128 and st.n_skipped == 1


def _ddp_worker(rank, port, tmp, micro_batches):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    warnings.filterwarnings("error", message=".*broadcast_buffers.*")  # deprecated in torch 2.13
    args = tiny_args(Path(tmp), train_batch_size=4, gradient_accumulation_steps=1, num_optim_steps=3,
                     valid_step=3, lr_schedule="None", device="cpu")
    loop.train(args, ListLoader([micro_batches[rank]]))


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_two_ranks_equal_one_rank_with_accumulation(tmp_path):
    import torch.multiprocessing as mp
    mb = batches(2, seed=3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path / "ddp"), mb), nprocs=2, join=True)
    single = loop.train(tiny_args(tmp_path / "one", train_batch_size=8, gradient_accumulation_steps=2,
                                  num_optim_steps=3, valid_step=3, lr_schedule="None"), ListLoader(mb))
    ddp_run = next((tmp_path / "ddp" / "out").iterdir())
    assert ddp_run.name.startswith("GPT2.0.001.4.2gpu.")
    a = read_state_dict(ddp_run / "GP2-pretrain-step-3.pkl")
    b = read_state_dict(Path(single["run_dir"]) / "GP2-pretrain-step-3.pkl")
    init = loop.build_model(loop.load_config(tmp_path / "one" / "tiny_model"))
    moved = 0.0
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=2e-6)
        if k in init.state_dict():
            moved = max(moved, (a[k] - init.state_dict()[k]).abs().max().item())
    assert moved > 1e-3  # the parameters did train
    # logged token counts are summed over ranks, as the original's all_gather
    ra, rb = read_log(ddp_run / "train_log.txt"), read_log(Path(single["run_dir"]) / "train_log.txt")
    assert [r[5:7] for r in ra[1:]] == [r[5:7] for r in rb[1:]]


# ---- CLI: one-line errors before training

def _main_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        LSP_train.main([str(x) for x in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err and "Traceback" not in "\n".join(err)
    return err[-1]


def _base(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps({"n_layer": 1, "n_embd": 16, "n_head": 2, "n_ctx": 64,
                                                       "n_positions": 64, "vocab_size": 50257}))
    db = tmp_path / "train.64len.db"
    if not db.is_dir():  # a real DB (GPT-2 BPE, like the model folder), so lsp_data's checks apply
        tsv = tmp_path / "train.tsv"
        tsv.write_text("0.0 hello there\t1.0 hi how are you\n" * 8)
        build_db(tsv, db, max_seq_len=64, progress=False)
    ev = tmp_path / "eval.tsv"
    ev.write_text("hello there\thi\n" * 4)  # one full eval batch (the default 4): else refused at start-up
    return ["--model_name_or_path", model_dir, "--train_input_file", db, "--eval_input_file", ev,
            "--output_dir", tmp_path / "out", "--fp16", "false", "--max_seq_length", "64", "--pbar", "false"]


def _set_meta(db: Path, **kw):
    meta = json.loads((db / "meta.json").read_text())
    (db / "meta.json").write_text(json.dumps(meta | kw))


def test_cli_missing_eval_file(tmp_path, capsys):
    msg = _main_error(_base(tmp_path) + ["--eval_input_file", tmp_path / "nope.tsv"], capsys)
    assert "nope.tsv" in msg and "not found" in msg


def test_cli_db_of_other_max_seq_len(tmp_path, capsys):
    argv = _base(tmp_path)
    _set_meta(tmp_path / "train.64len.db", max_seq_len=128)
    msg = _main_error(argv, capsys)
    assert "train.64len.db" in msg and "128" in msg and "64" in msg


def test_cli_db_of_other_tokenizer(tmp_path, capsys):
    argv = _base(tmp_path)
    _set_meta(tmp_path / "train.64len.db", tokenizer_identity="0" * 64)
    assert "another tokenizer" in _main_error(argv, capsys)


def test_cli_incompatible_init_checkpoint(tmp_path, capsys, golden):
    msg = _main_error(_base(tmp_path) + ["--init_checkpoint", golden / "model" / "init.pkl"], capsys)
    assert "init.pkl" in msg and "n_embd=16" in msg


def test_cli_missing_db_and_bad_values(tmp_path, capsys):
    assert "nope.db" in _main_error(_base(tmp_path) + ["--train_input_file", tmp_path / "nope.db"], capsys)
    assert "divisible" in _main_error(_base(tmp_path) + ["--train_batch_size", "3"], capsys)
    with pytest.raises(SystemExit):
        parse_args(["--fp16", "maybe"])
    assert "expected true or false" in capsys.readouterr().err


def test_original_defaults_and_flag_forms():
    a = parse_args(["--model_name_or_path", "m", "--train_input_file", "d", "--output_dir", "o", "--local-rank", "3",
                    "--no_token_id", "FALSE"])
    assert (a.fp16, a.normalize_data, a.pbar, a.no_token_id) == (True, True, True, False)
    assert (a.train_batch_size, a.gradient_accumulation_steps, a.learning_rate, a.lr_schedule) == (4, 2, 1e-5, "noam")
    assert (a.warmup_steps, a.valid_step, a.num_optim_steps, a.local_rank) == (16000, 10000, 1000000, 3)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_config_file_precedence(tmp_path, fmt):
    cfg = {"learning_rate": 0.5, "fp16": "false", "warmup_steps": 7, "train_batch_size": 6}
    path = tmp_path / f"c.{fmt}"
    path.write_text(json.dumps(cfg) if fmt == "json" else "".join(f"{k}: {v}\n" for k, v in cfg.items()))
    a = parse_args(["--config", str(path), "--model_name_or_path", "m", "--train_input_file", "d", "--output_dir", "o",
                    "--learning_rate", "0.1", "--gradient_accumulation_steps", "3"])
    assert (a.learning_rate, a.fp16, a.warmup_steps, a.train_batch_size) == (0.1, False, 7, 6)
    path.write_text(json.dumps({"learnin_rate": 1}))
    with pytest.raises(UsageError, match="unknown keys learnin_rate"):
        parse_args(["--config", str(path), "--model_name_or_path", "m", "--train_input_file", "d", "--output_dir", "o"])


def test_continue_from_keeps_original_step_meaning(tmp_path, caplog):
    res = loop.train(tiny_args(tmp_path, continue_from=4, num_optim_steps=6, valid_step=3), ListLoader(batches()))
    log = read_log(Path(res["run_dir"]) / "train_log.txt")
    assert [r[1:3] for r in log[1:]] == [["6", "9"], ["7", "11"]]  # global_step=4, step=2*4-1, then +2 per update
    assert "only sets the step counters" in caplog.text
