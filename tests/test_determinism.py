"""--deterministic: the same run gives bit-identical losses and checkpoints at 1 and 2 threads
(gpt2_training/determinism.py); the swapped LayerNorm computes what torch's does."""
import json
from pathlib import Path

import pytest
import torch

import gpt2_training.loop as loop
from gpt2_training.determinism import DeterministicLayerNorm, deterministic_layer_norms
from gpt2_training.loss import LMLoss
from lsp_model.model import build_model, make_config
from train_helpers import ListLoader, read_log, synthetic_batches, tiny_args

# wide enough rows (8 x 64 tokens x 256) that torch's LayerNorm backward splits them over threads
CFG = dict(n_layer=1, n_embd=256, n_head=4, n_positions=64, vocab_size=256)


def grads(model, batch, precision):
    model.zero_grad(set_to_none=True)
    ids, pos, _, lab = batch
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss, _ = LMLoss(model)(ids, pos, None, lab)
    loss.backward()
    return loss, {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_swapped_layer_norm_computes_the_same(precision):
    torch.manual_seed(0)
    model = build_model(make_config(n_layer=2, n_embd=64, n_head=4, n_positions=64, vocab_size=256))
    batch = synthetic_batches(1, 4, 32, 256, seed=2)[0]
    loss_a, a = grads(model, batch, precision)
    assert deterministic_layer_norms(model) == 2 * 2 + 1
    assert isinstance(model.transformer.ln_f, DeterministicLayerNorm)
    loss_b, b = grads(model, batch, precision)
    assert torch.equal(loss_a, loss_b)
    for k in a:
        if ".ln_" in k:  # the weight/bias sums: another order, same values to rounding
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
        else:  # dx is torch's own kernel: everything upstream is bit-identical
            assert torch.equal(a[k], b[k]), k
    with torch.no_grad():  # eval: torch's module as is
        torch.testing.assert_close(model.transformer.ln_f(torch.ones(2, 64)), torch.zeros(2, 64) + model.transformer.ln_f.bias)


def train_at(tmp: Path, threads: int, bf16: bool):
    """A short run with --deterministic true at `threads` threads: (log rows without timings, weights)."""
    n = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        tmp = tmp / f"t{threads}"
        cfg = tmp / "tiny_model"
        cfg.mkdir(parents=True)
        (cfg / "config.json").write_text(json.dumps(CFG))
        args = tiny_args(tmp, num_optim_steps=3, valid_step=3, train_batch_size=8, gradient_accumulation_steps=1,
                         lr_schedule="None", learning_rate=1e-2, max_seq_length=64, deterministic="true",
                         bf16=str(bf16).lower())
        res = loop.train(args, ListLoader(synthetic_batches(3, 8, 64, 256, seed=5)))
    finally:
        torch.set_num_threads(n)
    log = read_log(Path(res["run_dir"]) / "train_log.txt")
    timing = log[0].index("epoch_time")
    return [[v for i, v in enumerate(r) if i != timing] for r in log], res["model"].state_dict()


@pytest.mark.parametrize("bf16", [False, True])
def test_deterministic_runs_are_bit_identical_at_one_and_two_threads(tmp_path, bf16):
    """The thread counts a 2-core machine's free-core choice gives (lsp_io/cpu.py). (At 3 threads on
    2 cores a matmul splits its work differently: docs/training.md, "Reproducibility".)"""
    (rows1, w1), (rows2, w2) = (train_at(tmp_path, t, bf16) for t in (1, 2))
    assert rows1 == rows2 and len(rows1) == 4
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k
