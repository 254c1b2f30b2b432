"""Write the README's performance table from the benchmarks' own JSON output (their --json).

    python benchmarks/bench_train.py --json /tmp/train.json      # ... and the other benchmarks
    python benchmarks/write_readme_table.py /tmp/train.json /tmp/optim.json /tmp/prepro.json /tmp/decode.json
    python benchmarks/run_all.py --quick     # runs them all, then this

Rewrites the lines between the perf-table markers in README.md; every number comes from a file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START = "<!-- perf-table:start: written by benchmarks/write_readme_table.py from the benchmarks' --json -->"
END = "<!-- perf-table:end -->"


def spread(x: dict, key: str, fmt: str, lo: str = "lo", hi: str = "hi", unit: str = "") -> str:
    """`median [min-max]` when the row carries its range (older JSON files may not)."""
    v = format(x[key], fmt) + unit
    if lo in x and hi in x:
        v += f" [{format(x[lo], fmt)}-{format(x[hi], fmt)}]"
    return v


def _rows_train(d):
    r = {(x["name"], x["precision"]): x for x in d["rows"]}
    out = []
    for prec in ("fp32", "bf16"):
        if ("ours", prec) in r:
            o, p = r[("ours", prec)], r[("plain", prec)]
            out.append((f"training {prec}", "bench_train.py", spread(o, "tokens_per_s", ",.0f") + " tok/s",
                        f"transformers `labels=` + AdamW(fused) + clip: {spread(p, 'tokens_per_s', ',.0f')} tok/s",
                        spread(o, "ratio_vs_plain", ".2f", "ratio_lo", "ratio_hi") + "x"))
    if ("ours", "bf16/fp32") in r:
        o, p = r[("ours", "bf16/fp32")], r[("plain", "bf16/fp32")]
        out.append(("training bf16/fp32", "bench_train.py", spread(o, "ratio", ".2f") + "x",
                    f"transformers: {spread(p, 'ratio', '.2f')}x", ""))
    return out


def _rows_optim(d):
    r = {x["name"]: x for x in d["rows"]}
    o, c, f = r["lsp fused"], r["adamw fused+clip"], r["adamw fused"]  # ratios: per-round medians
    return [("optimizer update 117M", "bench_optim.py", f"original Adam (fused kernel): {spread(o, 'seconds', '.3f')} s",
             f"AdamW(fused) + clip_grad_norm_: {spread(c, 'seconds', '.3f')} s; AdamW(fused) alone "
             f"{spread(f, 'seconds', '.3f')} s",
             f"{spread(o, 'ratio_vs_adamw_clip', '.2f', 'ratio_lo', 'ratio_hi')}x / {o['ratio_vs_adamw']:.2f}x the time")]


def _rows_prepro(d):
    r = {x["name"]: x for x in d["rows"]}
    o = r.pop("original")
    return [(f"prepro {k}", "bench_prepro.py", f"{x['lines_per_s']:,.0f} lines/s, {x['lines_per_cpu_s']:,.0f} lines/CPU-s",
             f"original (re-implemented): {o['lines_per_s']:,.0f} lines/s, {o['lines_per_cpu_s']:,.0f} lines/CPU-s",
             f"{x['wall_x']:.1f}x wall, {x['cpu_x']:.1f}x CPU") for k, x in r.items()]


def _rows_decode(d):
    r = {(x["name"], x["mode"], x["batch"]): x for x in d["rows"]}
    out = []
    for (name, mode, bs), x in r.items():
        if name != "ours":
            continue
        t = r[("transformers", mode, bs)]
        n = f", {x['new_tokens']} new tokens" if "new_tokens" in x else ""
        out.append((f"decoding {mode} batch {bs}{n}", "bench_decode.py", spread(x, "tokens_per_s", ",.1f") + " tok/s",
                    f"transformers `generate`: {spread(t, 'tokens_per_s', ',.1f')} tok/s",
                    spread(x, "ratio_vs_transformers", ".2f", "ratio_lo", "ratio_hi", "x") + f", {_equal(x['outputs_equal'])}"))
    return out


def _equal(same) -> str:
    return "sampled (own random streams)" if same is None else "outputs equal" if same else "outputs DIFFER"


ROWS = {"train": _rows_train, "optim": _rows_optim, "prepro": _rows_prepro, "decode": _rows_decode}


def table(docs: list[dict]) -> str:
    lines = ["| stage | benchmark | ours | peer (same process, interleaved) | ratio | measured |", "|---|---|---|---|---|---|"]
    for d in docs:
        when = f"{d['date']}, {d['machine']}, {d['load']}"
        for stage, bench, ours, peer, ratio in ROWS[d["bench"]](d):
            lines.append(f"| {stage} | `{bench}` | {ours} | {peer} | {ratio} | {when} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+")
    ap.add_argument("--readme", default=str(REPO / "README.md"))
    a = ap.parse_args(argv)
    docs = [json.loads(Path(p).read_text()) for p in a.json]
    text = Path(a.readme).read_text()
    if START not in text or END not in text:
        sys.exit(f"{a.readme}: no perf-table markers ({START!r} ... {END!r})")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    from lsp_io.atomic import atomic_file
    with atomic_file(a.readme, "w") as f:
        f.write(head + START + "\n" + table(docs) + "\n" + END + tail)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
