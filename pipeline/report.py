"""The demo's report: metrics table, loss curve PNG (from train_log.txt / eval_log.txt), sample
exchanges, timings and where everything was written. Printed and saved as report.md."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from lsp_data.tsv import TURN_SEP
from lsp_model.runfolder import CKPT_PREFIX, EVAL_LOG, TRAIN_LOG

# Settings the report repeats (docs/demo.md says which are the original's and which the demo's).
SHOWN = ("data", "steps", "batch_size", "lr", "warmup_steps", "valid_step", "seed", "threads", "bf16")


def metrics_table(results: dict[str, dict]) -> str:
    """The paper's nine columns (owned by dstc.report), one row per decoding, as markdown."""
    from dstc.report import format_table
    return format_table(results, fmt="markdown")


def read_csv_log(path: Path) -> list[dict]:
    """Rows of train_log.txt / eval_log.txt (CSV with a header) as dicts of floats."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        rows = []
        for r in csv.DictReader(f):
            try:
                rows.append({k: float(v) for k, v in r.items() if k is not None})
            except (TypeError, ValueError):
                continue  # a half-written last line
        return rows


def update(row: dict) -> int:
    """The update a train_log/eval_log row was written after: the logs keep the original's
    off-by-one (global_step column = update + 1, gpt2_training/logs.py)."""
    return int(row["global_step"]) - 1


def loss_summary(train_rows: list[dict], eval_rows: list[dict]) -> dict:
    """First/last train loss and every eval, by update number (what --steps and valid_step count)."""
    out = {}
    if train_rows:
        out.update(first_step=update(train_rows[0]), first_mean_loss=train_rows[0]["mean_loss"],
                   last_step=update(train_rows[-1]), last_mean_loss=train_rows[-1]["mean_loss"],
                   last_mean_ppl=train_rows[-1]["mean_ppl"])
    if eval_rows:
        out["eval"] = [(update(r), r["eval_loss"], r["eval_ppl"]) for r in eval_rows]
    return out


def plot_loss(train_rows: list[dict], eval_rows: list[dict], png: Path, title: str = "") -> Path | None:
    """Loss against update: train_log's running mean (what the original logs) and the held-out
    loss at each valid_step. The legend sits below the axes, so it never covers a curve."""
    if not train_rows and not eval_rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lsp_io.atomic import atomic_file

    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=110)
    if train_rows:
        ax.plot([update(r) for r in train_rows], [r["mean_loss"] for r in train_rows],
                label="training loss (running mean over the epoch)")
    if eval_rows:
        ax.plot([update(r) for r in eval_rows], [r["eval_loss"] for r in eval_rows], "o-",
                label="held-out loss")
    ax.axhline(math.log(50257), color="grey", ls=":", lw=1, label="a uniform guess over 50,257 tokens")
    ax.set_xlabel("update")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title or "Demo model: loss during training")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False, fontsize="small")
    fig.tight_layout()
    with atomic_file(png, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return png


def read_lines(path: Path) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def sample_exchanges(contexts: Path, refs: Path, hyps: dict[str, Path], n: int = 5) -> str:
    ctx = [ln.split("\t", 1)[1] if "\t" in ln else ln for ln in read_lines(contexts)]
    ref = [ln.split("\t")[1] if "\t" in ln else "" for ln in read_lines(refs)]
    outs = {k: read_lines(p) for k, p in hyps.items()}
    blocks = []
    for i in range(min(n, len(ctx))):
        lines = [f"**{i + 1}.**"] + [f"> {t}" for t in ctx[i].split(TURN_SEP)]
        lines.append(f"- reference: {ref[i] if i < len(ref) else ''}")
        lines += [f"- {k}: {v[i] if i < len(v) else ''}" for k, v in outs.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_report(out: Path, run_dir: Path, files: dict, results: dict, timings: dict,
                 settings: dict | None = None) -> dict:
    """Write report.md and loss_curve.png under `out`, print the report, return a summary."""
    from lsp_io.atomic import atomic_file

    out = Path(out)
    train_rows = read_csv_log(run_dir / TRAIN_LOG)
    eval_rows = read_csv_log(run_dir / EVAL_LOG)
    png = plot_loss(train_rows, eval_rows, out / "loss_curve.png")
    loss = loss_summary(train_rows, eval_rows)
    metrics = {k: res for k, (_, res) in results.items()}
    hyps = {k: hyp for k, (hyp, _) in results.items()}

    n = next((r.get("n_lines") for r in metrics.values()), "?")
    parts = ["# DialoGPT demo report", "", f"## Metrics ({n} held-out contexts, `python -m dstc`)", "",
             metrics_table(metrics), "", "## Training", ""]
    if loss:
        parts.append(f"- training loss: {loss.get('first_mean_loss', float('nan')):.3f} after update "
                     f"{loss.get('first_step')} -> {loss.get('last_mean_loss', float('nan')):.3f} after update "
                     f"{loss.get('last_step')} (train_log.txt's running mean since the epoch start, as the "
                     f"original logs)")
        for step, el, ep in loss.get("eval", []):
            parts.append(f"- held-out loss after update {step}: {el:.3f} (ppl {ep:.1f})")
    if png:
        parts.append(f"- loss curve: {png}")
    if settings:
        parts.append("- settings: " + ", ".join(f"{k} {settings[k]}" for k in SHOWN if k in settings))
    parts += ["", "## Sample exchanges", "", sample_exchanges(files["contexts"], files["refs"], hyps), "",
              "## Where everything is", "",
              f"- data: {files['train'].parent} (train.tsv, test.contexts.tsv, test.refs.tsv, data.json)",
              f"- model config: {out / 'model' / 'config.json'}",
              f"- run folder: {run_dir} ({CKPT_PREFIX}N.pkl, {TRAIN_LOG}, {EVAL_LOG})",
              *[f"- {k} hypotheses: {p}; scores: {out / 'eval' / (k + '.json')}" for k, p in hyps.items()],
              f"- logs of every stage: {out / 'logs'}", f"- this report: {out / 'report.md'}", "",
              "## Timings", "", " | ".join(f"{k} {v:.0f}s" for k, v in timings.items())]
    text = "\n".join(parts) + "\n"
    with atomic_file(out / "report.md", "w") as f:
        f.write(text)
    summary = {"metrics": metrics, "loss": loss, "timings": timings, "run_dir": str(run_dir),
               "report": str(out / "report.md"), "loss_curve": str(png) if png else None}
    with atomic_file(out / "summary.json", "w") as f:
        f.write(json.dumps(summary, indent=2, default=str) + "\n")
    print("\n" + text, flush=True)
    return summary
