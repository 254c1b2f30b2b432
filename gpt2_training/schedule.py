"""Learning-rate schedules of the original `set_lr`, called before every optimizer update.

`step` is `global_step`, the number of updates already done. noam/noamwd use s = step + 1.
The float expressions keep the original's operation order so values agree to the last bit.
"""
from __future__ import annotations

SCHEDULES = ("noam", "noamwd", "BERT", "None")


def warmup_linear(x: float, warmup: float = 0.002) -> float:
    # No clamp at 0: past num_optim_steps the original's BERT schedule goes negative.
    if x < warmup:
        return x / warmup
    return (x - 1.0) / (warmup - 1.0)


def noam_decay(step: int, warmup_steps: int, model_size: int) -> float:
    return model_size ** (-0.5) * min(step ** (-0.5), step * warmup_steps ** (-1.5))


def noamwd_decay(step: int, warmup_steps: int, model_size: int, rate: float = 0.5,
                 decay_steps: int = 1000, start_step: int = 500) -> float:
    # Halves every 1000 steps and is already x0.5 at s=500 (the original's start_step quirk).
    return (model_size ** (-0.5) * min(step ** (-0.5), step * warmup_steps ** (-1.5))
            * rate ** (max(step - start_step + decay_steps, 0) // decay_steps))


def lr_at(step: int, schedule: str, lr: float, warmup_steps: int, warmup_proportion: float,
          n_embd: int, tot_steps: int) -> float:
    """The learning rate the original's set_lr puts into every param group at `global_step`."""
    if schedule == "None":
        return lr
    if schedule == "noam":
        return lr * 1e4 * noam_decay(step + 1, warmup_steps, n_embd)
    if schedule == "noamwd":
        return lr * 1e4 * noamwd_decay(step + 1, warmup_steps, n_embd)
    # 'BERT' and anything else
    return lr * warmup_linear(step / tot_steps, warmup_proportion)


def set_lr(optimizer, step: int, schedule: str, lr: float, warmup_steps: int, warmup_proportion: float,
           n_embd: int, tot_steps: int) -> float:
    lr_this_step = lr_at(step, schedule, lr, warmup_steps, warmup_proportion, n_embd, tot_steps)
    for group in optimizer.param_groups:
        group["lr"] = lr_this_step
    return lr_this_step
