"""prepro throughput against the original prepro.py: lines/s wall and lines per CPU-second.

    python benchmarks/bench_prepro.py [--lines 60000] [--baseline_lines 10000] [--workers 1,2]

Corpus: chitchat-dataset's conversations in DialoGPT's TSV format, every line once (no copies
that would keep a BPE cache hot). The original is benchmarks/original_prepro.py, its algorithm
re-implemented (pure-Python BPE with its cache, per-line features, json + gzip 9, shelve), shown
byte-identical to the original's output by tests/test_bench_prepro.py; it runs on the first
--baseline_lines lines, its rate is per line. CPU time counts worker processes and tokenizer
threads. Interleaved rounds, medians.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


# ------------------------------------------------------------------------------ the corpus

def chitchat_lines(rng: random.Random) -> list[str]:
    import chitchat_dataset
    data = json.loads((Path(chitchat_dataset.__file__).parent / "dataset.json").read_text())
    lines = []
    for conv in data.values():
        turns = [" ".join(" ".join(m["text"].split()) for m in msgs) for msgs in conv["messages"]]
        turns = [t for t in turns if t]
        for k in range(1, len(turns)):  # every response with up to 4 turns of context
            ctx = turns[max(0, k - 4):k]
            w = lambda: "1.0" if rng.random() < 0.8 else "0.0"  # noqa: E731
            lines.append(" EOS ".join(f"{w()} {t}" for t in ctx) + f"\t1.0 {turns[k]}")
    return lines


def build_corpus(path: Path, n_lines: int) -> int:
    """The first n_lines of chitchat's lines, each once (a non-repetitive corpus: no warm BPE
    cache from copies); conversation order, as an extractor writes it. Returns the line count."""
    lines = chitchat_lines(random.Random(0))[:n_lines]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    return len(lines)


def _children_cpu() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------------------ main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=60_000, help="corpus lines (chitchat has ~131k, none repeated)")
    p.add_argument("--baseline_lines", type=int, default=10_000, help="lines the original runs on (its rate is per line)")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args(argv)

    from common import load, machine, ratio_rounds, summary as med, write_json
    from lsp_data.prepro import build_db
    from lsp_model.tokenizer import find_bpe_files, load_tokenizer
    import original_prepro
    tok = load_tokenizer()
    tmp = Path(tempfile.mkdtemp(prefix="bench_prepro."))
    try:
        corpus, base_corpus = tmp / "bench.tsv", tmp / "base.tsv"
        n = build_corpus(corpus, args.lines)
        with open(corpus, encoding="utf-8") as f, open(base_corpus, "w", encoding="utf-8") as g:
            g.writelines(line for line, _ in zip(f, range(args.baseline_lines)))
        print(f"corpus: {n:,} lines, {corpus.stat().st_size / 1e6:.1f} MB, no line repeated "
              f"(chitchat-dataset in conversation order); {machine()}")
        workers = [int(w) for w in args.workers.split(",")]
        per_line = {k: [] for k in ["original"] + [f"ours w{w}" for w in workers]}  # (wall s, CPU s) per line
        for r in range(args.rounds):
            for key in per_line:
                out = tmp / f"r{r}-{key.replace(' ', '')}.db"
                t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
                if key == "original":
                    original_prepro.prepro(base_corpus, out, original_prepro.GPT2Tokenizer(*find_bpe_files()))
                    lines = args.baseline_lines
                else:
                    build_db(corpus, out, tokenizer=tok, workers=int(key[6:]), progress=False)
                    lines = n
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0 + _children_cpu() - k0
                per_line[key].append((wall / lines, cpu / lines))
                shutil.rmtree(out)
        print(f"{args.rounds} rounds; {load()}; median [min-max] over rounds, ratios per round")
        rows = []
        for key, xs in per_line.items():
            row = dict(name=key)
            for i, (rate_key, x_key) in enumerate((("lines_per_s", "wall_x"), ("lines_per_cpu_s", "cpu_x"))):
                rate = med([1 / x[i] for x in xs])
                x_orig = med(ratio_rounds([o[i] for o in per_line["original"]], [x[i] for x in xs]))
                for key_, v in ((rate_key, rate), (x_key, x_orig)):
                    row |= {key_: v[0], f"{key_}_lo": v[1], f"{key_}_hi": v[2]}
            print(f"  {key:10} {row['lines_per_s']:8,.0f} [{row['lines_per_s_lo']:,.0f}-{row['lines_per_s_hi']:,.0f}] "
                  f"lines/s wall ({row['wall_x']:.1f}x original [{row['wall_x_lo']:.1f}-{row['wall_x_hi']:.1f}]), "
                  f"{row['lines_per_cpu_s']:8,.0f} [{row['lines_per_cpu_s_lo']:,.0f}-{row['lines_per_cpu_s_hi']:,.0f}] "
                  f"lines per CPU-second ({row['cpu_x']:.1f}x [{row['cpu_x_lo']:.1f}-{row['cpu_x_hi']:.1f}])")
            rows.append(row)
        write_json(args.json, "prepro", rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
