"""TrainState: the loop's counters and running sums (the original's names), and their resume form.

The sums stay on the device as float64 tensors, so a micro-step never syncs with the host; the
one host read per update is `update_stats()`. `state_dict()` holds plain numbers only (the
resume file is read with weights_only=True) and `load_state_dict()` restores a run inside its
epoch, running sums included, so the log rows after a resume equal an uninterrupted run's.
"""
from __future__ import annotations

import time

import torch

INF = 1e8  # the original's cap: a batch ppl above it counts as the running mean instead

SUMS = ("tr_loss", "tr_ppl", "mean_ppl", "n_token_real")  # device tensors
COUNTS = ("global_step", "step", "epoch", "nb_tr_steps", "n_token_total")  # host ints


class TrainState:
    """global_step = updates done, step = micro-batches done, epoch (0-based); per epoch:
    nb_tr_steps micro-batches, tr_loss/tr_ppl sums, mean_ppl, n_token_real/n_token_total."""

    def __init__(self, device: torch.device, global_step: int = 0, step: int = 0):
        self.device = device
        self.global_step, self.step, self.epoch = global_step, step, 0
        self.start_epoch()

    def _zero(self) -> torch.Tensor:
        return torch.zeros((), dtype=torch.float64, device=self.device)

    def start_epoch(self) -> None:
        self.tr_loss, self.tr_ppl, self.mean_ppl, self.n_token_real = (self._zero() for _ in SUMS)
        self.nb_tr_steps = self.n_token_total = 0
        self.update_loss = self._zero()  # sum of this update's micro-batch losses (NaN check)
        self.epoch_start = time.time()

    def end_epoch(self) -> None:
        self.epoch += 1
        self.start_epoch()

    @property
    def epoch_time(self) -> float:
        return time.time() - self.epoch_start

    def add_micro_batch(self, loss: torch.Tensor, ppl: torch.Tensor, n_real: torch.Tensor, n_total: int,
                        rescale: float) -> None:
        """Accumulate one micro-batch: `loss` is already divided by `rescale` (short batches);
        `ppl` is the task's metric (a ranker's accuracy), `n_real`/`n_total` its tokens."""
        self.tr_loss += loss.detach().double() * rescale
        self.update_loss += loss.detach().double()
        self.nb_tr_steps += 1
        ppl = ppl.detach().double()
        self.tr_ppl += torch.where(ppl < INF, ppl, self.mean_ppl)
        self.mean_ppl = self.tr_ppl / self.nb_tr_steps
        self.n_token_total += n_total
        self.n_token_real += n_real
        self.step += 1

    def update_stats(self) -> torch.Tensor:
        """[mean_loss, mean_ppl, n_token_real, update_loss] on the device, to reduce over ranks."""
        return torch.stack([self.tr_loss / self.nb_tr_steps, self.mean_ppl, self.n_token_real, self.update_loss])

    def finish_update(self, stats: list[float], world_size: int) -> dict:
        """Count the update; `stats` = update_stats() summed over ranks. Returns the log values."""
        self.global_step += 1
        self.update_loss = self._zero()
        mean_loss, mean_ppl = stats[0] / world_size, stats[1] / world_size
        if world_size > 1:  # the original kept the all-rank mean as the running ppl
            self.mean_ppl = torch.tensor(mean_ppl, dtype=torch.float64, device=self.device)
        return dict(mean_loss=mean_loss, mean_ppl=mean_ppl, n_token_real=int(stats[2]),
                    n_token_total=self.n_token_total * world_size, epoch_time=self.epoch_time)

    def state_dict(self) -> dict:
        return ({k: getattr(self, k) for k in COUNTS} | {k: getattr(self, k).item() for k in SUMS}
                | {"epoch_time": self.epoch_time})

    def load_state_dict(self, sd: dict) -> None:
        for k in COUNTS:
            setattr(self, k, sd[k])
        for k in SUMS:
            setattr(self, k, torch.tensor(sd[k], dtype=torch.float64, device=self.device))
        self.update_loss = self._zero()
        self.epoch_start = time.time() - sd["epoch_time"]
