"""The original's eval_model_loss: sample-weighted means of per-batch loss and ppl."""
from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from lsp_model.model import forward_loss

from .args import UsageError

logger = logging.getLogger(__name__)


def check_gives_a_batch(loader, path, batch_size: int) -> None:
    """At start-up, not at the first evaluation after many updates: the original drops a partial
    eval batch, so a file with fewer usable examples than --eval_batch_size gives no batch at all.
    Reads only until the first batch is full."""
    try:
        if next(iter(loader), None) is not None:
            return
    except ValueError as e:  # a malformed line, named by the loader
        raise UsageError(f"--eval_input_file {str(e).splitlines()[0]}") from None
    with open(path, "rb") as f:
        lines = sum(1 for line in f if line.strip())
    why = (f"lower --eval_batch_size to at most {max(1, lines)}, or add examples" if lines < batch_size else
           "no example fits --max_seq_length")
    raise UsageError(f"--eval_input_file {path}: {lines} lines give no full batch of --eval_batch_size "
                     f"{batch_size} (a partial batch is dropped, as in the original): {why}")


@torch.no_grad()
def eval_model_loss(model, eval_dataloader, epoch_id: int, no_token_id: bool = True, device="cpu",
                    autocast=None, verbose: bool = True) -> tuple[float, float]:
    """eval_loss = sum(loss_b * n_b)/sum(n_b), eval_ppl = sum(ppl_b * n_b)/sum(n_b), where ppl_b is the
    original's per-batch ppl (exp of the mean per-row NLL). Leaves the model in eval mode, as the
    original; the caller switches it back to train."""
    model.eval()
    tot_loss, tot_ppl, tot_sample = [], [], []
    for batch in eval_dataloader:
        input_ids, position_ids, token_ids, label_ids = (t.to(device) for t in batch[:4])
        with autocast if autocast is not None else contextlib.nullcontext():
            loss, ppl = forward_loss(model, input_ids, position_ids, None if no_token_id else token_ids, label_ids)
        n = input_ids.shape[0]
        tot_loss.append(loss.float().mean().item() * n)
        tot_ppl.append(ppl.float().mean().item() * n)
        tot_sample.append(n)
    if not tot_sample:
        raise ValueError("the eval data gave no batch (fewer examples than --eval_batch_size?)")
    eval_loss = np.sum(tot_loss) / np.sum(tot_sample)
    eval_ppl = np.sum(tot_ppl) / np.sum(tot_sample)
    if verbose:
        print(f"\n Epoch {epoch_id}: Val loss {eval_loss} Val ppl {eval_ppl} ")
    return float(eval_loss), float(eval_ppl)
