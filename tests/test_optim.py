"""The original's Adam (no bias correction, eps 1e-6, per-tensor clipping, decay on every
parameter) on torch's fused kernel equals the update written out as the original's formula."""
import pytest
import torch

from gpt2_training import optim


def _reference_steps(ps, grads_per_step, lr, b1=0.9, b2=0.999, e=1e-6, wd=0.01, max_norm=1.0):
    """The original lsp_model/optim.py Adam.step, one parameter at a time, in float64."""
    ps = [p.double().clone() for p in ps]
    ms = [torch.zeros_like(p) for p in ps]
    vs = [torch.zeros_like(p) for p in ps]
    for grads in grads_per_step:
        for p, g, m, v in zip(ps, grads, ms, vs):
            g = g.double()
            g = g * min(1.0, max_norm / (g.norm().item() + 1e-6))  # clip_grad_norm_(p, max_norm)
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.sub_(lr * (m / (v.sqrt() + e) + wd * p))
    return ps


def _run(ps, grads_per_step, lr):
    ps = [p.clone().requires_grad_() for p in ps]
    opt = optim.Adam([{"params": ps, "weight_decay": 0.0}], lr=lr)  # group key ignored, as the original
    for grads in grads_per_step:
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        opt.step()
    return [p.detach() for p in ps], opt


def _problem(n_steps=12):
    g = torch.Generator().manual_seed(0)
    ps = [torch.randn(64, 32, generator=g), torch.randn(32, generator=g), torch.randn(7, 5, 3, generator=g)]
    # large and small gradients: some tensors get clipped, some not
    grads = [[torch.randn(p.shape, generator=g) * s for p, s in zip(ps, (3.0, 1e-3, 0.05))] for _ in range(n_steps)]
    return ps, grads


def test_fused_adam_equals_original_formula():
    ps, grads = _problem()
    got, opt = _run(ps, grads, lr=1e-2)
    want = _reference_steps(ps, grads, lr=1e-2)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-6)
    # the steps moved the parameters far more than the tolerance, and the step count is ours
    assert min((a - p).abs().max().item() for a, p in zip(got, ps)) > 1e-3
    assert all(opt.state[p]["step"] == len(grads) for p in opt.param_groups[0]["params"])


def test_fused_and_foreach_paths_agree(monkeypatch):
    ps, grads = _problem()
    fused, _ = _run(ps, grads, lr=1e-2)
    monkeypatch.setattr(optim, "_fused_devices", lambda: ())
    foreach, _ = _run(ps, grads, lr=1e-2)
    for a, b in zip(fused, foreach):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_beta_too_close_to_one_is_refused():
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match=r"betas \(0.9, 1.0\)"):
        optim.Adam([p], lr=1e-3, b2=1.0).step()
