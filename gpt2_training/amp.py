"""Low-precision weight copies made once per optimizer update, not once per micro-batch.

Under bf16/fp16 autocast every fp32 weight is cast on each forward; autocast caches the casts of
leaf weights only while some autocast region is open, and drops them when the outermost one
closes, i.e. after every micro-batch's forward. With gradient accumulation that is one cast of
every weight per micro-batch (8 per update at accumulation 8, 124M parameters each at 117M).

`UpdateCasts` keeps an outer autocast region (disabled: the backward runs outside autocast as
before) open from the first micro-batch of an update until just before its optimizer step, so
autocast casts each weight once; the LM head's weight, which gpt2_training.loss casts itself, is
kept in `low_weight`'s cache for the same span. The arithmetic is the same casts of the same
values, so losses and gradients are bit-identical to casting per micro-batch; the copies must
go before the optimizer changes the weights, which `close()` does.
"""
from __future__ import annotations

import torch

_cache: dict | None = None  # (id(weight), dtype) -> low-precision copy, while an update is open


def low_weight(w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`w` in `dtype`, made once per open update (a fresh cast when none is open)."""
    if w.dtype == dtype:
        return w
    if _cache is None:
        return w.to(dtype)
    key = (id(w), dtype)
    if key not in _cache:
        _cache[key] = w.to(dtype)
    return _cache[key]


class UpdateCasts:
    """open() at each micro-batch (a no-op after the first of an update), close() before the
    optimizer step. Does nothing without autocast (fp32)."""

    def __init__(self, device_type: str, enabled: bool):
        self.device_type, self.enabled = device_type, enabled
        self._region = None

    def open(self) -> None:
        global _cache
        if not self.enabled or self._region is not None:
            return
        self._region = torch.autocast(self.device_type, enabled=False)
        self._region.__enter__()  # nesting > 0: autocast keeps its weight casts until close()
        _cache = {}

    def close(self) -> None:
        global _cache
        if self._region is None:
            return
        _cache = None
        region, self._region = self._region, None
        region.__exit__(None, None, None)  # back to nesting 0: autocast drops its casts

    def __enter__(self) -> "UpdateCasts":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
