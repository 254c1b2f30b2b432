"""train_log.txt / eval_log.txt exactly as the original wrote them, plus the tqdm bar.

Row convention (kept for plotting scripts): a row written after update k, in 0-based epoch e,
after s micro-steps shows `e+1, k+1, s+1` (the original's off-by-one: the first row says
global_step 2). fp16 runs append two columns, loss_scale and n_skipped (overflowed updates).
"""
from __future__ import annotations

from pathlib import Path

from lsp_io.atomic import atomic_file

TRAIN_HEADER = "epoch,global_step,step,mean_loss,mean_ppl,n_token_real,n_token_total,epoch_time"
EVAL_HEADER = "epoch,global_step,step,eval_loss,eval_ppl"
FP16_EXTRA = ",loss_scale,n_skipped"


def truncate_after(path: Path, global_step: int) -> None:
    """On exact resume from update N, drop rows logged after N (their global_step column > N+1)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    keep = [ln for ln in lines if not ln[:1].isdigit() or int(ln.split(",")[1]) <= global_step + 1]
    if keep != lines:
        with atomic_file(path, "w") as f:
            f.write("".join(ln + "\n" for ln in keep))


def open_logs(log_dir, fp16: bool, resume_step: int | None = None):
    """Open both logs for appending, line-buffered. The original appends the header on every
    start; on exact resume the existing header is kept and later rows are dropped."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, header in (("train_log.txt", TRAIN_HEADER + (FP16_EXTRA if fp16 else "")),
                         ("eval_log.txt", EVAL_HEADER)):
        path = log_dir / name
        if resume_step is not None:
            truncate_after(path, resume_step)
        f = open(path, "a+", buffering=1)
        if resume_step is None or path.stat().st_size == 0:
            print(header, file=f)
        files.append(f)
    return files


def train_row(epoch, global_step, step, mean_loss, mean_ppl, n_real, n_total, epoch_time, scaler=None) -> str:
    row = f"{epoch + 1},{global_step + 1},{step + 1},{mean_loss},{mean_ppl},{n_real},{n_total},{epoch_time}"
    if scaler is not None:
        row += f",{scaler.cur_scale},{scaler.n_skipped}"
    return row


def eval_row(epoch, global_step, step, eval_loss, eval_ppl) -> str:
    return f"{epoch + 1},{global_step + 1},{step + 1},{eval_loss},{eval_ppl}"


def make_pbar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc="training", disable=not enabled, dynamic_ncols=True)


def pbar_postfix(n_real_all, epoch_time, mean_ppl, mean_loss, lr, epoch) -> str:
    toks = int(n_real_all // max(epoch_time, 1e-9) // 1000)
    return f"tok/s: {toks}k ppl: {mean_ppl:.2f} loss: {mean_loss:.3f} lr: {lr:.3g} epoch: {epoch}"
