"""Training numbers that do not depend on the CPU thread count (`--deterministic true`).

The same command on the same machine gives bit-identical losses with a fixed thread count, but
the demo and LSP_train pick the thread count from the cores free when they start, which differs
between runs on a shared machine. Measured (demo model, one fp32 micro-batch, 1 against 2
threads, torch 2.13 CPU): the loss and every matmul weight's gradient are equal; only the
LayerNorm weight and bias gradients differ, because torch's CPU LayerNorm backward sums them
over the rows in per-thread partial buffers. Reductions over one dimension with many outputs
(`sum(0)`), norms and the matmuls of this model are thread-count independent (checked at 1-4
threads: tests/test_determinism.py). So `deterministic_layer_norms` swaps each LayerNorm for
one whose backward takes dx from torch's own kernel and sums the weight and bias gradients with
`sum(0)`. Values differ from torch's kernel in the last bits (another summation order), which is
why it is a flag: the default path stays the golden-tested one.
"""
from __future__ import annotations

import torch
from torch import nn


class _LayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, shape, eps):
        dt = x.dtype
        if torch.is_autocast_enabled(x.device.type):
            x = x.to(weight.dtype)  # layer_norm runs in fp32 under autocast
        with torch.autocast(x.device.type, enabled=False):
            out, mean, rstd = torch.native_layer_norm(x, shape, weight, bias, eps)
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        ctx.shape, ctx.dt = shape, dt
        return out

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        dx = torch.ops.aten.native_layer_norm_backward(dy, x, ctx.shape, mean, rstd, weight, bias,
                                                       [True, False, False])[0]
        rows = dy.reshape(-1, weight.numel())
        x_hat = ((x - mean) * rstd).reshape(-1, weight.numel())
        dw = (rows * x_hat).sum(0).view_as(weight)
        db = rows.sum(0).view_as(bias)
        return dx.to(ctx.dt), dw, db, None, None


class DeterministicLayerNorm(nn.LayerNorm):
    """nn.LayerNorm whose parameter gradients are summed in a thread-count-independent order."""

    def forward(self, x):
        if self.weight is None or self.bias is None or not torch.is_grad_enabled():
            return super().forward(x)
        return _LayerNorm.apply(x, self.weight, self.bias, tuple(self.normalized_shape), self.eps)


def deterministic_layer_norms(model: nn.Module) -> int:
    """Make every nn.LayerNorm of `model` a DeterministicLayerNorm, in place (same parameters and
    state dict); returns how many."""
    n = 0
    for m in model.modules():
        if type(m) is nn.LayerNorm:
            m.__class__ = DeterministicLayerNorm
            n += 1
    return n
