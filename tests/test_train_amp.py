"""bf16 weights cast once per update (gpt2_training/amp.py): one cast per weight instead of one per
micro-batch, and the same numbers bit for bit, through whole runs with accumulation."""
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import gpt2_training.loop as loop
from gpt2_training.amp import UpdateCasts
from gpt2_training.loss import LMLoss
from lsp_model.model import build_model, make_config
from train_helpers import ListLoader, read_log, synthetic_batches, tiny_args


class CountWeightCasts(TorchDispatchMode):
    """How many times each parameter's storage is cast to bf16."""

    def __init__(self, params):
        super().__init__()
        self.ptrs = {p.data_ptr() for p in params}
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (func is torch.ops.aten._to_copy.default and kwargs.get("dtype") == torch.bfloat16
                and args[0].data_ptr() in self.ptrs):
            self.n += 1
        return func(*args, **kwargs)


def accumulate(model, batches, casts: bool):
    lm = LMLoss(model)
    model.zero_grad(set_to_none=True)
    with CountWeightCasts(model.parameters()) as count, UpdateCasts("cpu", enabled=casts):
        for ids, pos, _, lab in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss, _ = lm(ids, pos, None, lab)
            loss.backward()
    return count.n, {k: p.grad.clone() for k, p in model.named_parameters()}


def test_each_weight_is_cast_once_per_update_and_the_gradients_do_not_change():
    torch.manual_seed(0)
    model = build_model(make_config(n_layer=2, n_embd=32, n_head=4, n_positions=64, vocab_size=256))
    batches = synthetic_batches(4, 3, 20, 256, seed=1)
    per_micro, g_per_micro = accumulate(model, batches, casts=False)
    once, g_once = accumulate(model, batches, casts=True)
    # every matmul weight (4 per block + the tied head) and bias cast in each of the 4 micro-batches
    n_cast = 2 * 4 * 2 + 1
    assert per_micro == 4 * n_cast and once == n_cast
    assert all(torch.equal(g_per_micro[k], g_once[k]) for k in g_once)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_runs_with_accumulation_are_bit_identical_to_casting_per_micro_batch(tmp_path, monkeypatch, precision):
    """Whole runs (accumulation 4, several updates, an eval): every logged loss and the final weights
    equal those of casting per micro-batch, so the cached copies never outlive an update."""
    flags = dict(bf16="true") if precision == "bf16" else dict(fp16="true")
    kw = dict(num_optim_steps=4, valid_step=2, train_batch_size=8, gradient_accumulation_steps=4,
              lr_schedule="None", learning_rate=1e-2, skip_eval=False, **flags)
    data = synthetic_batches(8, 2, 24, 256, seed=3)
    evals = [b[:4] + (None, None) for b in synthetic_batches(2, 2, 24, 256, seed=9)]
    once = loop.train(tiny_args(tmp_path / "once", **kw), ListLoader(data), evals)
    monkeypatch.setattr(UpdateCasts, "open", lambda self: None)
    per_micro = loop.train(tiny_args(tmp_path / "per", **kw), ListLoader(data), evals)
    for name in ("train_log.txt", "eval_log.txt"):
        a, b = (read_log(Path(r["run_dir"]) / name) for r in (once, per_micro))
        timing = a[0].index("epoch_time") if "epoch_time" in a[0] else None
        def values(rows):
            return [[v for i, v in enumerate(r) if i != timing] for r in rows]
        assert values(a) == values(b) and len(a) > 2  # all but the timing column
    for (k, x), (_, y) in zip(once["model"].state_dict().items(), per_micro["model"].state_dict().items()):
        assert torch.equal(x, y), k
