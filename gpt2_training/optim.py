"""The original's two optimizers (fp32: its own Adam; fp16: apex FusedAdam + FP16_Optimizer),
re-expressed on torch's fused AdamW kernel (bias correction cancelled, see _adam_update), plus a modern AdamW choice.

Both original optimizers have NO bias correction. Their differences are kept on purpose:

| | fp32 path (`Adam`) | fp16 path (`FusedAdam` + `LossScaler`) |
|---|---|---|
| eps (outside the sqrt) | 1e-6 | 1e-8 |
| grad clipping at 1.0 | per TENSOR | per param GROUP, with apex's formula |
| weight decay 0.01 (decoupled) | on EVERY parameter (*) | not on `bias`/`ln` parameters |

(*) The original's LSP_train.py builds its groups with the key 'weight_decay' while its Adam
reads 'weight_decay_rate' (default 0.01), so biases and LayerNorms decay too. The published
models were trained with this; `Adam` keeps it.
"""
from __future__ import annotations

import torch

NO_DECAY = ("bias", "ln")  # substring match on parameter names, as the original


def param_groups(model, weight_decay: float = 0.01) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # the tied head appears once, as transformer.wte
        if not p.requires_grad:
            continue
        (no_decay if any(nd in name for nd in NO_DECAY) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _grads_and_states(group, state, keys=("next_m", "next_v")):
    params, grads, ms, vs = [], [], [], []
    for p in group["params"]:
        if p.grad is None:
            continue
        st = state[p]
        if not st:
            st["step"] = 0
            for k in keys:
                st[k] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["step"] += 1
        params.append(p)
        grads.append(p.grad)
        ms.append(st[keys[0]])
        vs.append(st[keys[1]])
    return params, grads, ms, vs


# torch's fused Adam applies bias correction: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps) with
# bc = 1 - beta**step (in double). At step 2^60, beta**step underflows to exactly 0 for any beta
# below 1 - 1e-16, so bc1 = bc2 = 1 exactly and the kernel computes the original's update, without
# bias correction, with the original lr, eps and weight decay unchanged. Our own "step" counts stay
# in the optimizer state; this constant only feeds the kernel.
_NO_BIAS_CORRECTION_STEP = 2.0 ** 60
_step_tensors: dict = {}


def _fused_devices() -> tuple:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    return tuple(_get_fused_kernels_supported_devices())


@torch.no_grad()
def _adam_update(params, grads, ms, vs, lr, b1, b2, eps, wd, grad_div=None):
    """p -= lr * (m/(sqrt(v)+eps) + wd*p); no bias correction (both original optimizers).

    grad_div: None, or per tensor a 0-d divisor tensor (None = 1) that each grad is divided by
    first, in place, as clipping or unscaling would have done it: the fused kernel does it in the
    same pass (its grad_scale), so clipping costs no pass of its own over the grads.

    Applied as p *= 1 - lr*wd, then p -= lr * m/(sqrt(v)+eps) (only float rounding differs from
    the original's single update), in one pass over p, g, m, v by torch's fused AdamW kernel."""
    if b1 ** _NO_BIAS_CORRECTION_STEP != 0.0 or b2 ** _NO_BIAS_CORRECTION_STEP != 0.0:
        raise ValueError(f"Adam betas ({b1}, {b2}): each must be below 1 - 1e-16")
    divs = grad_div if grad_div is not None else [None] * len(params)
    runs: dict = {}  # tensors sharing a divisor: one kernel call each
    for i, d in enumerate(divs):
        runs.setdefault(id(d), (d, []))[1].append(i)
    dev, dt = params[0].device, params[0].dtype
    if dev.type in _fused_devices() and all(p.device == dev and p.dtype == dt for p in params):
        key = (dev, dt)
        if key not in _step_tensors:
            _step_tensors[key] = torch.tensor(_NO_BIAS_CORRECTION_STEP, dtype=torch.float32, device=dev)
        for d, idx in runs.values():
            pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
            torch._fused_adamw_(pick(params), pick(grads), pick(ms), pick(vs), [], [_step_tensors[key]] * len(idx),
                                lr=lr, beta1=b1, beta2=b2, weight_decay=wd, eps=eps, amsgrad=False,
                                maximize=False, grad_scale=d)
        return
    for d, idx in runs.values():  # the same update on foreach kernels (devices without a fused one)
        if d is not None:
            torch._foreach_div_([grads[i] for i in idx], d)
    torch._foreach_mul_(ms, b1)
    torch._foreach_add_(ms, grads, alpha=1 - b1)
    torch._foreach_mul_(vs, b2)
    torch._foreach_addcmul_(vs, grads, grads, value=1 - b2)
    denom = torch._foreach_sqrt(vs)
    torch._foreach_add_(denom, eps)
    if wd > 0:
        torch._foreach_mul_(params, 1 - lr * wd)
    torch._foreach_addcdiv_(params, ms, denom, value=-lr)


class Adam(torch.optim.Optimizer):
    """The original's fp32 Adam (lsp_model/optim.py with t_total=-1): per-tensor clipping,
    no bias correction, eps 1e-6, decoupled decay `weight_decay_rate` on every group.
    Groups' 'weight_decay' keys are ignored, as in the original (see the module docstring)."""

    def __init__(self, params, lr, b1=0.9, b2=0.999, e=1e-6, weight_decay_rate=0.01, max_grad_norm=1.0):
        super().__init__(params, dict(lr=lr, b1=b1, b2=b2, e=e, weight_decay_rate=weight_decay_rate,
                                      max_grad_norm=max_grad_norm))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params, grads, ms, vs = _grads_and_states(group, self.state)
            if not params:
                continue
            div = None
            if group["max_grad_norm"] > 0:  # clip_grad_norm_(p, max) for each tensor on its own
                norms = torch.stack(torch._foreach_norm(grads))
                coef = (group["max_grad_norm"] / (norms + 1e-6)).clamp(max=1.0)
                if coef.device.type == "cpu":  # only the clipped tensors, inside the update's pass
                    div = [None if c >= 1.0 else torch.tensor(1.0 / c) for c in coef.tolist()]
                else:  # no host sync on accelerators
                    torch._foreach_mul_(grads, coef.unbind())
            _adam_update(params, grads, ms, vs, group["lr"], group["b1"], group["b2"], group["e"],
                         group["weight_decay_rate"], div)


class FusedAdam(torch.optim.Optimizer):
    """apex FusedAdam(bias_correction=False, max_grad_norm=1.0) driven by apex FP16_Optimizer.

    Grads arrive multiplied by the loss scale. Per group: norm = L2 norm of the group's
    (scaled) grads; clip = (norm/scale + 1e-6)/max_grad_norm; grads are divided by
    clip*scale if clip > 1 else by scale. `step` returns False (and changes nothing) when any
    group's norm is inf/nan: the caller's LossScaler then backs off.
    """

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, max_grad_norm=1.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      max_grad_norm=max_grad_norm))

    @torch.no_grad()
    def step(self, closure=None, scale: float = 1.0) -> bool:
        work, norms = [], []
        for group in self.param_groups:
            grads = [p.grad for p in group["params"] if p.grad is not None]
            if grads:
                norms.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
                work.append(group)
        if not work:
            return True
        norms = torch.stack(norms)
        if not bool(torch.isfinite(norms).all()):  # the one host sync per update
            return False
        clip = (norms / scale + 1e-6) / torch.tensor([g["max_grad_norm"] for g in work], dtype=norms.dtype,
                                                     device=norms.device)
        combined = torch.where(clip > 1, clip * scale, torch.full_like(clip, scale))
        for group, c in zip(work, combined.unbind()):
            params, grads, ms, vs = _grads_and_states(group, self.state, ("exp_avg", "exp_avg_sq"))
            b1, b2 = group["betas"]
            _adam_update(params, grads, ms, vs, group["lr"], b1, b2, group["eps"], group["weight_decay"],
                         [c] * len(params))
        return True


class LossScaler:
    """apex FP16_Optimizer's loss scale: dynamic (start 2^16, x2 after 1000 clean updates since
    the last overflow, /2 on overflow, min 1) or static (`loss_scale > 0`; overflows still skip)."""

    def __init__(self, loss_scale: float = 0.0, init_scale: float = 2.0 ** 16, scale_factor: float = 2.0,
                 scale_window: int = 1000):
        self.dynamic = not loss_scale > 0
        self.cur_scale = init_scale if self.dynamic else float(loss_scale)
        self.scale_factor, self.scale_window = scale_factor, scale_window
        self.cur_iter, self.last_overflow_iter, self.n_skipped = 0, -1, 0

    def update(self, overflow: bool) -> None:
        if overflow:
            self.n_skipped += 1
        if self.dynamic:
            if overflow:
                self.cur_scale = max(self.cur_scale / self.scale_factor, 1.0)
                self.last_overflow_iter = self.cur_iter
            elif (self.cur_iter - self.last_overflow_iter) % self.scale_window == 0:
                self.cur_scale *= self.scale_factor
        self.cur_iter += 1

    def state_dict(self) -> dict:
        return dict(dynamic=self.dynamic, cur_scale=self.cur_scale, cur_iter=self.cur_iter,
                    last_overflow_iter=self.last_overflow_iter, n_skipped=self.n_skipped)

    def load_state_dict(self, sd: dict) -> None:
        for k, v in sd.items():
            setattr(self, k, v)


def build_optimizer(model, optim: str, lr: float, fp16: bool, device: torch.device):
    """`lsp` = the original's optimizer for the precision (Adam for fp32/bf16, FusedAdam for fp16);
    `adamw` = torch AdamW (fused kernel where the device has one, else foreach), global clipping."""
    groups = param_groups(model)
    if optim == "adamw":
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8 if fp16 else 1e-6, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8 if fp16 else 1e-6, foreach=True)
    if fp16:
        return FusedAdam(groups, lr=lr, max_grad_norm=1.0)
    return Adam(groups, lr=lr, max_grad_norm=1.0)


def optimizer_step(optimizer, scaler: LossScaler | None, max_grad_norm: float = 1.0) -> bool:
    """One update from the accumulated grads; returns False for a skipped (overflowed) fp16 step."""
    scale = scaler.cur_scale if scaler is not None else 1.0
    if isinstance(optimizer, FusedAdam):
        ok = optimizer.step(scale=scale)
    elif isinstance(optimizer, Adam):
        optimizer.step()
        ok = True
    else:  # AdamW: unscale, global clip, skip on overflow
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        grads = [p.grad for p in params]
        if scale != 1.0:
            torch._foreach_mul_(grads, 1.0 / scale)
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
        ok = scaler is None or bool(torch.isfinite(norm))
        if ok:
            optimizer.step()
    if scaler is not None:
        scaler.update(overflow=not ok)
    return ok
