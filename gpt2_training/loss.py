"""The training loss without materialising [B, T, vocab] logits.

Same values as lsp_model.model.lm_loss (loss = token mean over the batch, ppl = exp of the mean
per-row mean NLL), but the LM head and the cross entropy run together in row chunks, and the
gradients w.r.t. the hidden states and the head weight are computed in the same pass (the loss
is a fixed token mean, so they are known at forward time). With a 50257 vocabulary the full
logits, their log-softmax and its gradient dominate memory traffic; chunking removes that.
Only the float summation order differs from the unchunked loss.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .amp import low_weight

CHUNK_ELEMS = 1 << 25  # logits per chunk (128 MiB in fp32)


def _head_grads_fp32(hc_all, wc, labels, inv_n, chunk, need_dw=True):
    """The fp32 path: logits, softmax and both gradients in fp32 (the golden-tested numbers).
    need_dw=False (a frozen head, e.g. LoRA) skips the head-weight gradient's matmuls."""
    ce = torch.empty(hc_all.shape[0], dtype=torch.float32, device=hc_all.device)
    dh = torch.empty(hc_all.shape, dtype=torch.float32, device=hc_all.device)
    dw = torch.zeros(wc.shape, dtype=torch.float32, device=wc.device) if need_dw else None
    for s in range(0, hc_all.shape[0], chunk):
        hc, lc = hc_all[s:s + chunk], labels[s:s + chunk]
        logits = (hc @ wc.t()).float()
        lse = torch.logsumexp(logits, dim=-1)
        valid = lc != -1
        safe = lc.clamp(min=0).unsqueeze(1)
        ce[s:s + chunk] = torch.where(valid, lse - logits.gather(1, safe).squeeze(1), 0.0)
        # d(sum ce * inv_n)/d logits = (softmax - onehot) * inv_n on labelled rows
        g = logits.sub_(lse.unsqueeze(1)).exp_()
        g.scatter_add_(1, safe, torch.full_like(safe, -1, dtype=g.dtype))
        g.mul_((valid.to(g.dtype) * inv_n).unsqueeze(1))
        dh[s:s + chunk] = g @ wc
        if need_dw:
            dw += g.t() @ hc
    return ce, dh, dw


def _head_grads_low(hc_all, wc, labels, inv_n, chunk, need_dw=True):
    """bf16/fp16 matmuls, log-softmax in fp32. Few passes over vocabulary-sized tensors (they
    dominate at 117M on CPU): logits go bf16 -> fp32 log-probs in one pass, the scaled softmax
    gradient is written straight to bf16, and the head-weight gradient stays in the matmul's
    low-precision output (fp32 accumulation inside the matmul) until the backward casts it once."""
    ce = torch.empty(hc_all.shape[0], dtype=torch.float32, device=hc_all.device)
    dh = torch.empty(hc_all.shape, dtype=torch.float32, device=hc_all.device)
    dw = None
    for s in range(0, hc_all.shape[0], chunk):
        hc, lc = hc_all[s:s + chunk], labels[s:s + chunk]
        logp = torch.log_softmax(hc @ wc.t(), dim=-1, dtype=torch.float32)
        valid = lc != -1
        safe = lc.clamp(min=0).unsqueeze(1)
        ce[s:s + chunk] = torch.where(valid, -logp.gather(1, safe).squeeze(1), 0.0)
        g = logp.exp_()
        g.scatter_add_(1, safe, torch.full_like(safe, -1, dtype=g.dtype))
        gl = torch.empty(g.shape, dtype=wc.dtype, device=g.device)
        torch.mul(g, (valid.to(g.dtype) * inv_n).unsqueeze(1), out=gl)
        dh[s:s + chunk] = gl @ wc
        if need_dw:
            part = gl.t() @ hc
            dw = part if dw is None else (dw.float() if dw.dtype != torch.float32 else dw).add_(part)
    return ce, dh, dw


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, w, labels, compute_dtype, grad_scale):
        n_valid = (labels != -1).sum().clamp(min=1)
        inv_n = grad_scale / n_valid.to(torch.float32)
        chunk = max(1, CHUNK_ELEMS // w.shape[0])
        grads = _head_grads_fp32 if compute_dtype == torch.float32 else _head_grads_low
        ce, dh, dw = grads(h.to(compute_dtype), low_weight(w, compute_dtype), labels, inv_n, chunk,
                           ctx.needs_input_grad[1])
        ctx.save_for_backward(dh, dw)
        ctx.grad_scale = grad_scale
        ctx.dtypes = (h.dtype, w.dtype)
        loss = ce.sum() / n_valid
        ctx.mark_non_differentiable(ce)
        return loss, ce

    @staticmethod
    def backward(ctx, grad_loss, _grad_ce):
        dh, dw = ctx.saved_tensors
        k = grad_loss / ctx.grad_scale
        if dw is None:  # a frozen head
            return (dh * k).to(ctx.dtypes[0]), None, None, None, None
        if dw.dtype != ctx.dtypes[1]:  # low-precision path: one cast, and x1 skipped on CPU
            dw = dw.to(ctx.dtypes[1])
            if dw.device.type != "cpu" or k.item() != 1.0:
                dw.mul_(k)
            return (dh * k).to(ctx.dtypes[0]), dw, None, None, None
        return (dh * k).to(ctx.dtypes[0]), (dw * k).to(ctx.dtypes[1]), None, None, None


def linear_cross_entropy(h, w, labels, grad_scale: float = 1.0):
    """(loss, per-token ce) of logits = h @ w.T against pre-shifted labels (-1 ignored).
    `grad_scale` = the fp16 loss scale the caller will multiply the loss by, so the low-precision
    gradient matmuls see scaled values (no underflow)."""
    dev = h.device.type
    cdt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else h.dtype
    h, labels = h.flatten(0, 1), labels.flatten()
    keep = None
    if dev == "cpu":
        # Unlabelled positions (-1: padding, zero-weight turns) add nothing to the loss or the
        # gradient: skip their head matmuls. Boolean indexing syncs with the host, which costs
        # nothing on CPU; on GPUs the full chunked path keeps the launch queue free of syncs.
        keep = labels != -1
        h, labels = h[keep], labels[keep]
    with torch.autocast(dev, enabled=False):
        loss, ce = _LinearCrossEntropy.apply(h, w, labels, cdt, float(grad_scale))
    if keep is not None:
        ce = torch.zeros(keep.shape, dtype=ce.dtype, device=ce.device).masked_scatter_(keep, ce)
    return loss, ce


def _fused_gelu(model) -> None:
    """transformers' gelu_new is six elementwise ops (each a pass over [B, T, 4*n_embd], forward
    and backward); F.gelu(approximate="tanh") is the same function in one kernel (max difference
    2.4e-7 in fp32, rounding only). Training-only: decoding keeps transformers' module."""
    if getattr(model.config, "activation_function", None) != "gelu_new":
        return
    for block in model.transformer.h:
        block.mlp.act = nn.GELU(approximate="tanh")


class LMLoss(nn.Module):
    """model -> (loss, ppl), the original's `model(input_ids, position_ids, token_type_ids, lm_labels)`.
    A module so DDP can wrap the whole computation (its hooks need the forward to go through it)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        _fused_gelu(model)

    def forward(self, input_ids, position_ids, token_type_ids, labels, grad_scale: float = 1.0):
        # All-ones mask for the same reason as lsp_model.model.forward_logits (right padding).
        with _attention_backend(input_ids.device.type):
            h = self.model.transformer(input_ids=input_ids, position_ids=position_ids,
                                       token_type_ids=token_type_ids, attention_mask=torch.ones_like(input_ids),
                                       use_cache=False).last_hidden_state
        loss, ce = linear_cross_entropy(h, self.model.lm_head.weight, labels, grad_scale)
        ce = ce.view(labels.shape)
        ppl = torch.exp((ce.sum(1) / (labels != -1).sum(1)).mean())
        return loss, ppl


def _attention_backend(dev: str):
    """On CPU under bf16/fp16 autocast, SDPA's flash kernel (forward and backward) is about 2x
    slower than the math path at training lengths (T <= 128); fp32 and GPUs keep the default."""
    if dev == "cpu" and torch.is_autocast_enabled(dev):
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()
