"""The demo's precision choice: timed updates in fp32 and bf16, the faster by a margin, said and
stamped (gpt2_training/precision.py, pipeline.stages.stage_precision)."""
import json
from pathlib import Path

import pytest

import gpt2_training.precision as precision
import pipeline.stages as stages
from pipeline.settings import DemoSettings


def fake_timers(seconds: dict):
    return lambda config, batch, seq, p, seed=0: (lambda: seconds[p])


@pytest.fixture
def native_bf16(monkeypatch):
    """The product probe says bf16 is not emulated (the update timers decide)."""
    monkeypatch.setattr(precision, "matmul_ratio", lambda config, batch, seq: 0.5)


@pytest.mark.parametrize("fp32,bf16,choice", [(2.0, 1.0, "bf16"), (1.0, 2.0, "fp32"), (1.05, 1.0, "fp32"),
                                              (1.1, 1.0, "bf16")])
def test_the_faster_by_a_margin(monkeypatch, native_bf16, fp32, bf16, choice):
    monkeypatch.setattr(precision, "update_timer", fake_timers({"fp32": fp32, "bf16": bf16}))
    res = precision.measure(None, 8, 16, rounds=3)
    assert res == {"fp32": fp32, "bf16": bf16, "rounds": 3, "choice": choice, "matmul_ratio": 0.5}
    assert f"{fp32:.2f} s in fp32 and {bf16:.2f} s in bf16 (median of 3)" in precision.describe(res)


def test_a_slow_bf16_product_times_no_update(monkeypatch):
    """Where one bf16 product already takes GIVE_UP times fp32's, no update is timed at all (a
    bf16 update of the demo's model takes tens of seconds where bf16 is emulated)."""
    monkeypatch.setattr(precision, "matmul_ratio", lambda config, batch, seq: 40.0)
    monkeypatch.setattr(precision, "update_timer", lambda *a, **k: pytest.fail("an update was timed"))
    res = precision.measure(None, 8, 16, rounds=3)
    assert res == {"fp32": None, "bf16": None, "rounds": 0, "choice": "fp32", "matmul_ratio": 40.0}
    assert "a bf16 matrix product took 40x fp32's" in precision.describe(res)


def test_the_product_probe_times_both_precisions(monkeypatch):
    """matmul_ratio: bf16's time over fp32's for the model's MLP product; a first bf16 call
    already GIVE_UP times slower is the answer (no more calls)."""
    cfg = type("Config", (), {"n_embd": 16})()
    clock = iter([0.0, 1.0] * 4 + [0.0, 10.0])  # fp32: 1 s a call; bf16: 10 s
    monkeypatch.setattr(precision.time, "perf_counter", lambda: next(clock))
    assert precision.matmul_ratio(cfg, 2, 4, reps=4) == 10.0   # 4 fp32 calls, then one bf16 call
    clock = iter([0.0, 2.0] * 3 + [0.0, 3.0, 0.0, 1.0, 0.0, 5.0])  # bf16 within GIVE_UP: best of 3
    monkeypatch.setattr(precision.time, "perf_counter", lambda: next(clock))
    assert precision.matmul_ratio(cfg, 2, 4, reps=3) == 0.5
    monkeypatch.undo()
    assert precision.matmul_ratio(cfg, 2, 4) > 0  # the real clock


def test_emulated_bf16_is_not_timed_further(monkeypatch, native_bf16):
    calls = []

    def timers(config, batch, seq, p, seed=0):
        def one():
            calls.append(p)
            return {"fp32": 1.0, "bf16": 5.0}[p]
        return one
    monkeypatch.setattr(precision, "update_timer", timers)
    assert precision.measure(None, 8, 16, rounds=3) == {"fp32": 1.0, "bf16": 5.0, "rounds": 0, "choice": "fp32",
                                                         "matmul_ratio": 0.5}
    assert calls == ["fp32", "bf16"]


@pytest.mark.parametrize("probe", ["real", "native"])
def test_real_updates_are_timed_in_both_precisions(tmp_path, monkeypatch, probe):
    """The real probe and, with the probe saying bf16 has units, real updates in both precisions."""
    if probe == "native":
        monkeypatch.setattr(precision, "matmul_ratio", lambda config, batch, seq: 0.5)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 32, "vocab_size": 128}))
    out = tmp_path / "p.json"
    assert precision.main([str(cfg), "--batch", "2", "--seq", "16", "--rounds", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["matmul_ratio"] > 0
    if res["fp32"] is None:  # the probe found bf16 emulated on this machine
        assert probe == "real" and res["matmul_ratio"] > precision.GIVE_UP and res["choice"] == "fp32"
    else:
        assert res["fp32"] > 0 and res["bf16"] > 0 and res["choice"] == (
            "bf16" if res["rounds"] and res["fp32"] >= precision.MARGIN * res["bf16"] else "fp32")


def test_demo_measures_says_and_keeps_its_choice(tmp_path, capsys, monkeypatch, repo_dir):
    mdir = tmp_path / "model"
    mdir.mkdir()
    (mdir / "config.json").write_text(json.dumps({"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 32,
                                                  "vocab_size": 128}))
    s = DemoSettings(out=tmp_path / "out", batch_size=2, quiet=True, max_seq_len=16, repo=repo_dir)
    bf16 = stages.stage_precision(s, 1, mdir)
    said = capsys.readouterr().out
    res = json.loads((s.out / "logs" / "precision.json").read_text())
    assert bf16 == (res["choice"] == "bf16")
    assert f"training in {'bf16 autocast' if bf16 else 'fp32'}, the faster here" in said
    assert precision.describe(res) in said
    # a second run (a resumed demo) keeps the choice without measuring again
    monkeypatch.setattr(stages, "run", lambda *a, **k: pytest.fail("measured again"))
    assert stages.stage_precision(s, 1, mdir) == bf16
    assert "measured earlier" in capsys.readouterr().out
    # --bf16 given: no measurement, the flag
    for flag in (True, False):
        s2 = DemoSettings(out=tmp_path / "out2", bf16=flag, repo=repo_dir)
        assert stages.stage_precision(s2, 1, mdir) is flag
    assert not (Path(tmp_path / "out2") / "logs").exists()
