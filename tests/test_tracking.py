"""--report_to: the train/eval log rows and the run config reach TensorBoard and W&B (offline)."""
import importlib.util
from pathlib import Path

import pytest

import gpt2_training.loop as loop
from gpt2_training.args import UsageError
from train_helpers import ListLoader, read_log, synthetic_batches, tiny_args


def run(tmp_path, report_to):
    evals = [b + (None, None) for b in synthetic_batches(2, 4, 24, 256, seed=9)]
    res = loop.train(tiny_args(tmp_path, report_to=report_to, num_optim_steps=4, valid_step=2, skip_eval=False,
                               fp16="true"), ListLoader(synthetic_batches(3, 4, 24, 256)), evals)
    d = Path(res["run_dir"])
    return d, read_log(d / "train_log.txt"), read_log(d / "eval_log.txt")


def test_tensorboard_gets_every_log_row_and_the_config(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    d, train, evals = run(tmp_path, "tensorboard")
    acc = EventAccumulator(str(d / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    header, rows = train[0], train[1:]
    assert header[-2:] == ["loss_scale", "n_skipped"]  # the fp16 columns go too
    for i, col in enumerate(header):
        got = [(e.step, e.value) for e in acc.Scalars(f"train/{col}")]
        assert [s for s, _ in got] == [int(r[1]) for r in rows]  # x = the row's global_step column
        assert [v for _, v in got] == pytest.approx([float(r[i]) for r in rows], rel=1e-6), col
    assert len(acc.Scalars("train/lr")) == len(rows)
    got = [(e.step, e.value) for e in acc.Scalars("eval/eval_loss")]
    assert got == [(int(r[1]), pytest.approx(float(r[3]), rel=1e-6)) for r in evals[1:]] and len(got) == 2
    text = acc.Tensors("run_config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"learning_rate": 0.001' in text and '"micro_batch": 4' in text


def test_wandb_offline_run_holds_the_rows_and_the_config(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    d, train, _ = run(tmp_path, "wandb")
    files = list((d / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    data = files[0].read_bytes()  # the offline run's records (protobuf: keys and values are plain bytes)
    for key in [f"train/{c}" for c in train[0]] + ["train/lr", "eval/eval_loss", "eval/eval_ppl", "micro_batch"]:
        assert key.encode() in data, key


def test_missing_tracker_package_is_one_line(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    msg = r"--report_to wandb: wandb is not installed \(pip install 'dialogpt\[wandb\]'\)"
    with pytest.raises(UsageError, match=msg):
        loop.train(tiny_args(tmp_path, report_to="wandb"), ListLoader(synthetic_batches(3, 4, 24, 256)))
