"""The demo's report: metrics table, loss curve PNG (from train_log.txt / eval_log.txt), sample
exchanges, timings and where everything was written. Printed and saved as report.md."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

# (header, JSON key, index, scale, format): the columns of the DialoGPT paper's DSTC tables.
COLUMNS = [("NIST-2", "nist", 1, 1, "{:.2f}"), ("NIST-4", "nist", 3, 1, "{:.2f}"),
           ("BLEU-2 %", "bleu", 1, 100, "{:.2f}"), ("BLEU-4 %", "bleu", 3, 100, "{:.2f}"),
           ("METEOR %", "meteor", None, 100, "{:.2f}"), ("Entropy-4", "entropy", 3, 1, "{:.2f}"),
           ("Dist-1", "distinct", 0, 1, "{:.3f}"), ("Dist-2", "distinct", 1, 1, "{:.3f}"),
           ("Avg len", "avg_len", None, 1, "{:.1f}")]


def _cell(res: dict, key: str, idx: int | None, scale: float, fmt: str) -> str:
    v = res.get(key)
    if isinstance(v, list):
        v = v[idx] if idx is not None and idx < len(v) else None
    if not isinstance(v, (int, float)) or v < 0:  # METEOR unavailable (no java) or NIST failure
        return "n/a"
    return fmt.format(v * scale)


def metrics_table(results: dict[str, dict]) -> str:
    """A markdown table, one row per decoding, from `python -m dstc --json` results."""
    head = ["decoding", "lines"] + [c[0] for c in COLUMNS]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in results.items():
        cells = [name, str(res.get("n_lines", "?"))] + [_cell(res, *c[1:]) for c in COLUMNS]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


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


def loss_summary(train_rows: list[dict], eval_rows: list[dict]) -> dict:
    out = {}
    if train_rows:
        out.update(first_step=int(train_rows[0]["global_step"]), first_mean_loss=train_rows[0]["mean_loss"],
                   last_step=int(train_rows[-1]["global_step"]), last_mean_loss=train_rows[-1]["mean_loss"],
                   last_mean_ppl=train_rows[-1]["mean_ppl"])
    if eval_rows:
        out["eval"] = [(int(r["global_step"]), r["eval_loss"], r["eval_ppl"]) for r in eval_rows]
    return out


def plot_loss(train_rows: list[dict], eval_rows: list[dict], png: Path, title: str = "") -> Path | None:
    """Loss against optimizer step: train_log's running mean (what the original logs) and the
    eval loss at each valid_step."""
    if not train_rows and not eval_rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lsp_io.atomic import atomic_file

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train_rows:
        ax.plot([r["global_step"] for r in train_rows], [r["mean_loss"] for r in train_rows],
                label="train: mean_loss (train_log.txt, running mean over the epoch)")
    if eval_rows:
        ax.plot([r["global_step"] for r in eval_rows], [r["eval_loss"] for r in eval_rows], "o-",
                label="held-out: eval_loss (eval_log.txt)")
    ax.axhline(math.log(50257), color="grey", ls=":", lw=1, label="uniform over GPT-2's 50,257 tokens")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_title(title or "DialoGPT demo training")
    ax.grid(alpha=0.3)
    ax.legend()
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
        lines = [f"**{i + 1}.**"] + [f"> {t}" for t in ctx[i].split(" EOS ")]
        lines.append(f"- reference: {ref[i] if i < len(ref) else ''}")
        lines += [f"- {k}: {v[i] if i < len(v) else ''}" for k, v in outs.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_report(out: Path, run_dir: Path, files: dict, results: dict, timings: dict,
                 settings: dict | None = None) -> dict:
    """Write report.md and loss_curve.png under `out`, print the report, return a summary."""
    from lsp_io.atomic import atomic_file

    out = Path(out)
    train_rows = read_csv_log(run_dir / "train_log.txt")
    eval_rows = read_csv_log(run_dir / "eval_log.txt")
    png = plot_loss(train_rows, eval_rows, out / "loss_curve.png", title=f"{run_dir.name}")
    loss = loss_summary(train_rows, eval_rows)
    metrics = {k: res for k, (_, res) in results.items()}
    hyps = {k: hyp for k, (hyp, _) in results.items()}

    parts = ["# DialoGPT demo report", "", "## Metrics (held-out contexts, `python -m dstc`)", "",
             metrics_table(metrics), "", "## Training", ""]
    if loss:
        parts.append(f"- train_log mean_loss: {loss.get('first_mean_loss', float('nan')):.3f} at step "
                     f"{loss.get('first_step')} -> {loss.get('last_mean_loss', float('nan')):.3f} at step "
                     f"{loss.get('last_step')} (running mean since the epoch start, as the original logs)")
        for step, el, ep in loss.get("eval", []):
            parts.append(f"- eval_loss at step {step}: {el:.3f} (ppl {ep:.1f})")
    if png:
        parts.append(f"- loss curve: {png}")
    parts += ["", "## Sample exchanges", "", sample_exchanges(files["contexts"], files["refs"], hyps), "",
              "## Where everything is", "",
              f"- data: {files['train'].parent} (train.tsv, test.contexts.tsv, test.refs.tsv, data.json)",
              f"- model config: {out / 'model' / 'config.json'}",
              f"- run folder: {run_dir} (GP2-pretrain-step-N.pkl, train_log.txt, eval_log.txt)",
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
