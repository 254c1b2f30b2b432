"""Golden checks against the original code's outputs (tests/golden, or ../shared/golden when present): set_lr, gradients,
eval loss, and the noam/BERT/noamwd training trajectories."""
import json
import math

import pytest
import torch

from gpt2_training.eval import eval_model_loss
from gpt2_training.loss import LMLoss
from gpt2_training.schedule import lr_at
from lsp_model.checkpoint import load_model, read_state_dict
from train_helpers import (ListLoader, golden_args, golden_eval_batches, golden_train_batch,
                                read_log)


def test_set_lr_matches_golden(golden):
    d = json.loads((golden / "optim" / "set_lr.json").read_text())
    p = d["params"]
    n = 0
    for values, steps in (("values", "steps"), ("extra_values", "extra_steps")):
        for sched, by_embd in d[values].items():
            for n_embd, by_warm in by_embd.items():
                for warm, lrs in by_warm.items():
                    for step, want in zip(d[steps], lrs):
                        got = lr_at(step, sched, p["lr"], int(warm), p["warmup_proportion"], int(n_embd),
                                    p["num_optim_steps"])
                        assert got == pytest.approx(want, rel=1e-12, abs=0), (sched, n_embd, warm, step)
                        n += 1
    assert n == 1512


def test_grads_match_golden(golden):
    model = load_model(golden / "model" / "init.pkl", golden / "model" / "config.json")
    b = torch.load(golden / "model" / "batch.pt", weights_only=True)
    want = json.loads((golden / "model" / "grads.json").read_text())
    loss, _ = LMLoss(model)(b["input_ids"], b["position_ids"], None, b["labels"])
    loss.backward()
    assert loss.item() == pytest.approx(want["loss"], rel=1e-6)
    names = [n for n, _ in model.named_parameters()]
    assert names == list(want["grads"])
    for name, p in model.named_parameters():
        g = p.grad.double()
        w = want["grads"][name]
        assert g.norm().item() == pytest.approx(w["norm"], rel=1e-4), name
        assert g.sum().item() == pytest.approx(w["sum"], abs=1e-4 * max(w["norm"], 1e-6)), name


def test_eval_init_matches_golden(golden):
    model = load_model(golden / "model" / "init.pkl", golden / "model" / "config.json")
    want = json.loads((golden / "train" / "eval_init.json").read_text())
    loss, ppl = eval_model_loss(model, golden_eval_batches(golden), 0, verbose=False)
    assert loss == pytest.approx(want["eval_loss_init"], rel=1e-6)
    assert ppl == pytest.approx(want["eval_ppl_init"], rel=1e-5)


def test_noamwd_lr_trajectory_equals_golden(golden):
    # noamwd == noam for 30 steps (factor 0.5**((s+500)//1000) = 1); the golden runs are bitwise equal.
    steps = [json.loads(x) for x in (golden / "train" / "noamwd" / "steps.jsonl").open()]
    assert [lr_at(s["global_step"], "noamwd", 1e-5, 10, 0.1, 64, 30) for s in steps] == [s["lr"] for s in steps]
    a = read_log(golden / "train" / "noam" / "train_log.txt")
    b = read_log(golden / "train" / "noamwd" / "train_log.txt")
    assert [r[:7] for r in a] == [r[:7] for r in b]


N_STEPS = 15  # 30 would double the runtime; step 15 carries the golden eval and checkpoint


def _run(golden, tmp_path_factory, schedule, monkeypatch_lrs):
    import gpt2_training.loop as loop
    lrs = []
    orig = loop.set_lr

    def rec(*a, **k):
        lrs.append(orig(*a, **k))
        return lrs[-1]
    loop.set_lr = rec
    try:
        args = golden_args(golden, tmp_path_factory.mktemp(schedule), schedule,
                           ["--stop_after_steps", str(N_STEPS)])
        res = loop.train(args, ListLoader([golden_train_batch(golden)]), golden_eval_batches(golden))
    finally:
        loop.set_lr = orig
    return res, lrs


@pytest.fixture(scope="module", params=["BERT", "noam"])
def golden_run(request, golden, tmp_path_factory):
    res, lrs = _run(golden, tmp_path_factory, request.param, None)
    return request.param, res, lrs


# (train loss rel tol up to step 12, after step 12, eval rel, ckpt-15 element / max-abs)
TOL = {"BERT": (1e-5, 1e-5, 1e-5, 1e-4), "noam": (1e-5, 3e-3, 1e-4, 1e-3)}


@pytest.mark.slow
def test_trajectory_matches_golden(golden, golden_run):
    from pathlib import Path
    sched, res, lrs = golden_run
    gdir = golden / "train" / sched
    tol_early, tol_late, tol_eval, tol_ckpt = TOL[sched]
    steps = [json.loads(x) for x in (gdir / "steps.jsonl").open()][:N_STEPS]
    assert lrs == [s["lr"] for s in steps]  # exact
    run = Path(res["run_dir"])
    assert run.name.startswith("GPT2.1e-05.34.0gpu.")
    ours, gold = read_log(run / "train_log.txt"), read_log(gdir / "train_log.txt")
    assert ours[0] == gold[0]  # header
    assert len(ours) == N_STEPS + 1
    worst = 0.0
    for k, (o, g) in enumerate(zip(ours[1:], gold[1:]), start=1):
        assert o[:3] == g[:3] and o[5:7] == g[5:7]  # epoch, global_step, step, n_token_real, n_token_total
        rel = abs(float(o[3]) - float(g[3])) / float(g[3])
        assert rel <= (tol_early if k <= 12 else tol_late), (k, o[3], g[3])
        worst = max(worst, rel)
    ev_o, ev_g = read_log(run / "eval_log.txt"), read_log(gdir / "eval_log.txt")
    assert ev_o[0] == ev_g[0] and ev_o[1][:3] == ev_g[1][:3]
    assert float(ev_o[1][3]) == pytest.approx(float(ev_g[1][3]), rel=tol_eval)
    stats = json.loads((gdir / "ckpt_stats.json").read_text())["GP2-pretrain-step-15.pkl"]
    sd = read_state_dict(run / "GP2-pretrain-step-15.pkl")
    assert list(sd) == list(stats)  # the original's key order and layout
    for name, st in stats.items():
        t = sd[name].double().flatten()
        assert str(sd[name].dtype) == st["dtype"] and list(sd[name].shape) == st["shape"]
        maxabs = max(abs(st["min"]), abs(st["max"]))
        diff = (t[st["sample_idx"]] - torch.tensor(st["sample"], dtype=torch.float64)).abs().max().item()
        assert diff <= tol_ckpt * maxabs + 1e-12, (name, diff, maxabs)
    print(f"{sched}: worst train-loss rel {worst:.2e}, eval rel "
          f"{abs(float(ev_o[1][3]) / float(ev_g[1][3]) - 1):.2e}")
    assert math.isfinite(worst)
