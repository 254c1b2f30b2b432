"""train_log.txt / eval_log.txt exactly as the original wrote them, the tqdm bar, and the same rows
to the --report_to tracker (tracking.py).

Row convention (kept for plotting scripts): a row written after update k, in 0-based epoch e,
after s micro-steps shows `e+1, k+1, s+1` (the original's off-by-one: the first row says
global_step 2). fp16 runs append two columns, loss_scale and n_skipped (overflowed updates). The second
column's name is the task's metric: ppl for LSP_train, acc for a ranker (lsp_rank.train).
"""
from __future__ import annotations

import logging
from pathlib import Path

from lsp_io.atomic import atomic_file
from lsp_model.runfolder import EVAL_LOG, TRAIN_LOG

TRAIN_HEADER = "epoch,global_step,step,mean_loss,mean_ppl,n_token_real,n_token_total,epoch_time"
EVAL_HEADER = "epoch,global_step,step,eval_loss,eval_ppl"
FP16_EXTRA = ",loss_scale,n_skipped"


def headers(metric: str = "ppl") -> tuple[str, str]:
    """(train_log header, eval_log header) for a task whose second column is `metric`."""
    return TRAIN_HEADER.replace("_ppl", f"_{metric}"), EVAL_HEADER.replace("_ppl", f"_{metric}")

logger = logging.getLogger("LSP_train")


def truncate_after(path: Path, global_step: int) -> None:
    """On exact resume from update N, drop rows logged after N (their global_step column > N+1)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    keep = [ln for ln in lines if not ln[:1].isdigit() or int(ln.split(",")[1]) <= global_step + 1]
    if keep != lines:
        with atomic_file(path, "w") as f:
            f.write("".join(ln + "\n" for ln in keep))


def open_logs(log_dir, fp16: bool, resume_step: int | None = None, metric: str = "ppl"):
    """Open both logs for appending, line-buffered. The original appends the header on every
    start; on exact resume the existing header is kept and later rows are dropped."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    files = []
    train_header, eval_header = headers(metric)
    for name, header in ((TRAIN_LOG, train_header + (FP16_EXTRA if fp16 else "")), (EVAL_LOG, eval_header)):
        path = log_dir / name
        if resume_step is not None:
            truncate_after(path, resume_step)
        f = open(path, "a+", buffering=1)
        if resume_step is None or path.stat().st_size == 0:
            print(header, file=f)
        files.append(f)
    return files


def train_values(epoch, global_step, step, mean_loss, mean_ppl, n_real, n_total, epoch_time, scaler=None,
                 metric: str = "ppl") -> dict:
    """A train_log.txt row as {column: value}."""
    row = dict(zip(headers(metric)[0].split(","), (epoch + 1, global_step + 1, step + 1, mean_loss, mean_ppl,
                                                   n_real, n_total, epoch_time)))
    if scaler is not None:
        row |= {"loss_scale": scaler.cur_scale, "n_skipped": scaler.n_skipped}
    return row


def eval_values(epoch, global_step, step, eval_loss, eval_ppl, metric: str = "ppl") -> dict:
    return dict(zip(headers(metric)[1].split(","), (epoch + 1, global_step + 1, step + 1, eval_loss, eval_ppl)))


def as_line(row: dict) -> str:
    return ",".join(str(v) for v in row.values())


def make_pbar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc="training", disable=not enabled, dynamic_ncols=True)


def pbar_postfix(n_real_all, epoch_time, mean_ppl, mean_loss, lr, epoch, metric: str = "ppl") -> str:
    rate = n_real_all / max(epoch_time, 1e-9)  # below 1k tok/s (CPU) the original's "0k" said nothing
    toks = f"{int(rate // 1000)}k" if rate >= 1000 else f"{rate:.0f}"
    return f"tok/s: {toks} {metric}: {mean_ppl:.2f} loss: {mean_loss:.3f} lr: {lr:.3g} epoch: {epoch}"


class RunLog:
    """Everything a run reports: train_log/eval_log rows, the progress bar, the --report_to tracker
    and the fp16 overflow message. Writes on the main process only (`enabled`); a no-op elsewhere."""

    def __init__(self, log_dir, fp16: bool, resume_step: int | None, total: int, initial: int,
                 enabled: bool, pbar: bool, report_to: str = "none", config: dict | None = None,
                 metric: str = "ppl"):
        from .tracking import Tracker, open_tracker
        self.metric, self.log_dir = metric, Path(log_dir)
        self.train_f = self.eval_f = None
        self.tracker = Tracker()
        self.pbar = make_pbar(total, initial, enabled and pbar)
        if not enabled:
            return
        self.train_f, self.eval_f = open_logs(log_dir, fp16, resume_step, metric)
        self.tracker = open_tracker(report_to, log_dir, config or {})

    def update(self, state, s: dict, lr: float, scaler=None, ok: bool = True) -> None:
        """After update `state.global_step`: `s` = TrainState.finish_update's values."""
        if self.train_f is None:
            return
        self.pbar.update(1)
        self.pbar.set_postfix_str(pbar_postfix(s["n_token_real"], s["epoch_time"], s["mean_ppl"], s["mean_loss"],
                                               lr, state.epoch, self.metric), refresh=False)
        row = train_values(state.epoch, state.global_step, state.step, s["mean_loss"], s["mean_ppl"],
                           s["n_token_real"], s["n_token_total"], s["epoch_time"], scaler, self.metric)
        print(as_line(row), file=self.train_f)
        if scaler is not None and not ok:
            logger.info("fp16 overflow at update %d: step skipped, loss scale -> %g", state.global_step,
                        scaler.cur_scale)
        self.tracker.log("train", row["global_step"], row | {"lr": lr})

    def eval(self, state, eval_loss: float, eval_ppl: float) -> None:
        if self.eval_f is None:
            return
        row = eval_values(state.epoch, state.global_step, state.step, eval_loss, eval_ppl, self.metric)
        print(as_line(row), file=self.eval_f)
        self.tracker.log("eval", row["global_step"], row)

    def close(self) -> None:
        self.pbar.close()
        self.tracker.close()
        for f in (self.train_f, self.eval_f):
            if f is not None:
                f.close()
