"""Write the README's performance tables from the benchmarks' own JSON output (their --json).

    python benchmarks/bench_train.py --json /tmp/train.json      # ... and the other benchmarks
    python benchmarks/write_readme_table.py /tmp/train.json /tmp/optim.json /tmp/prepro.json /tmp/decode.json
    python benchmarks/run_all.py --quick     # runs them all, then this
    python benchmarks/run_all.py --extra     # the other stages' table (loader, evaluation, Reddit)

Two tables, each between its markers in README.md (TABLES: which benchmarks feed which); a table
is rewritten when files for it are given. Every number comes from a file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# table name -> (the benchmarks it shows, its peer column's heading); README marks each table with
# the start/end lines of `markers(name)`
TABLES = {"perf-table": (("train", "optim", "prepro", "decode"), "peer (same process, interleaved)"),
          "perf-other": (("loader", "dstc", "reddit"), "peer (interleaved rounds)")}


def markers(name: str) -> tuple[str, str]:
    return (f"<!-- {name}:start: written by benchmarks/write_readme_table.py from the benchmarks' --json -->",
            f"<!-- {name}:end -->")


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

    def rates(x):
        return (f"{spread(x, 'lines_per_s', ',.0f', 'lines_per_s_lo', 'lines_per_s_hi')} lines/s, "
                f"{spread(x, 'lines_per_cpu_s', ',.0f', 'lines_per_cpu_s_lo', 'lines_per_cpu_s_hi')} lines/CPU-s")
    return [(f"prepro {k}", "bench_prepro.py", rates(x), f"original (re-implemented): {rates(o)}",
             f"{spread(x, 'wall_x', '.1f', 'wall_x_lo', 'wall_x_hi', 'x')} wall, "
             f"{spread(x, 'cpu_x', '.1f', 'cpu_x_lo', 'cpu_x_hi', 'x')} CPU") for k, x in r.items()]


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


def _rows_loader(d):
    r = {x["name"]: x for x in d["rows"]}
    o, b = r["ours"], r["original-like"]

    def rate(x):
        return (f"{spread(x, 'features_per_s', ',.0f')} features/s, "
                f"{spread(x, 'features_per_cpu_s', ',.0f', 'cpu_lo', 'cpu_hi')} per CPU-s")
    return [(f"training loader, batch {o['batch_size']}", "bench_loader.py", rate(o),
             f"a loader written as the original's (json, DataLoader, pad_sequence): {rate(b)}",
             spread(o, "ratio", ".1f", "ratio_lo", "ratio_hi", "x") + " (goal 20,000 features/s: "
             + ("met)" if o["features_per_s"] >= 20_000 else "NOT met)"))]


def _rows_dstc(d):
    r = {x["name"]: x for x in d["rows"]}
    w, c = r["wall"], r["cpu"]
    out = [(f"evaluation, {w['examples']:,} examples x {w['refs']} refs (NIST, BLEU, entropy, distinct, length)",
            "bench_dstc.py", f"{spread(w, 'seconds', '.1f')} s wall, {spread(c, 'seconds', '.1f')} s CPU",
            "none here (perl mteval-v14c.pl not installed)",
            "goal < 10 s: " + ("met" if w["seconds"] < 10 else "NOT met"))]
    if "with METEOR" in r:
        m = r["with METEOR"]
        out.append(("evaluation with METEOR (its jar beside Python)", "bench_dstc.py",
                    f"{spread(m, 'seconds', '.1f')} s", "", ""))
    return out


def _rows_reddit(d):
    r = {x["name"]: x for x in d["rows"]}
    b = r.pop("baseline")

    def rate(x):
        return (f"{spread(x, 'comments_per_s', ',.0f', 'rate_lo', 'rate_hi')} comments/s, "
                f"{spread(x, 'cpu_s', '.1f', 'cpu_lo', 'cpu_hi')} CPU-s, "
                f"peak RSS {spread(x, 'rss_mb', ',.0f', 'rss_lo', 'rss_hi')} MB")
    n = f"{b['comments'] / 1e6:g}M" if b["comments"] >= 1e6 else f"{b['comments']:,}"
    return [(f"Reddit extract + conv, {n} comments (.zst), {k[4:]} process{'es' if k[4:] != '1' else ''}",
             "bench_reddit.py", rate(x), f"a plain port of the original reddit.py (1 process): {rate(b)}",
             spread(x, "speedup", ".2f", "speedup_lo", "speedup_hi", "x") + " wall, "
             + spread(x, "cpu_speedup", ".2f", "cpu_speedup_lo", "cpu_speedup_hi", "x") + " less CPU")
            for k, x in r.items()]


ROWS = {"train": _rows_train, "optim": _rows_optim, "prepro": _rows_prepro, "decode": _rows_decode,
        "loader": _rows_loader, "dstc": _rows_dstc, "reddit": _rows_reddit}


def table(docs: list[dict], peer: str = TABLES["perf-table"][1]) -> str:
    lines = [f"| stage | benchmark | ours | {peer} | ratio | measured |", "|---|---|---|---|---|---|"]
    for d in docs:
        when = f"{d['date']}, {d['machine']}, {d['load']}"
        for stage, bench, ours, peer_text, ratio in ROWS[d["bench"]](d):
            lines.append(f"| {stage} | `{bench}` | {ours} | {peer_text} | {ratio} | {when} |")
    return "\n".join(lines)


def rewrite(text: str, docs: list[dict], where: str = "README.md") -> str:
    """`text` with each table that `docs` feed rewritten between its markers."""
    known = {b for benches, _ in TABLES.values() for b in benches}
    unknown = sorted({d["bench"] for d in docs} - known)
    if unknown:
        sys.exit(f"write_readme_table: no table shows {', '.join(unknown)}")
    for name, (benches, peer) in TABLES.items():
        mine = [d for d in docs if d["bench"] in benches]
        if not mine:
            continue
        start, end = markers(name)
        if start not in text or end not in text:
            sys.exit(f"{where}: no {name} markers ({start!r} ... {end!r})")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + start + "\n" + table(mine, peer) + "\n" + end + tail
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+")
    ap.add_argument("--readme", default=str(REPO / "README.md"))
    a = ap.parse_args(argv)
    docs = [json.loads(Path(p).read_text()) for p in a.json]
    text = rewrite(Path(a.readme).read_text(), docs, a.readme)
    from lsp_io.atomic import atomic_file
    with atomic_file(a.readme, "w") as f:
        f.write(text)

if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
