"""Benchmark the DSTC evaluation on a 6k-multi-ref-sized corpus.

    python benchmarks/bench_dstc.py                 # 6,000 examples x 15 refs, with METEOR
    python benchmarks/bench_dstc.py --no-meteor     # NIST/BLEU/entropy/distinct/len only
    MTEVAL_PL=path/to/mteval-v14c.pl python benchmarks/bench_dstc.py   # also time perl mteval

The corpus is generated (seeded): Reddit-like sentences with casing, punctuation, contractions,
URLs and numbers, so clean_str and the mteval tokeniser do real work.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dstc import Corpus, evaluate_corpus, format_table, write_artifacts  # noqa: E402

WORDS = ("i you he she it we they the a an is was be to of and in that have not on with for as do at "
         "this but by from or will my one all would there their what so up out if about who get which "
         "go me game player team season coach really don't can't it's that's i'm you're won't lol "
         "think know good great thanks yeah people time fun love movie show play 3.14 1,000 :) !!").split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 25))]
    if rng.random() < 0.1:
        words.insert(rng.randrange(len(words)), "https://www.reddit.com/r/funny/")
    if rng.random() < 0.5:
        words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice([".", "?", "!", "", " ..."])


def make_corpus(n: int, n_refs: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    refs = [[sentence(rng) for _ in range(n_refs)] for _ in range(n)]
    # hypotheses share some words with a reference so that n-grams match
    hyps = [(" ".join(r[0].split()[: rng.randint(2, 8)]) + " " + sentence(rng)) if rng.random() < 0.9 else ""
            for r in refs]
    return hyps, refs


def perl_mteval(corpus: Corpus) -> None:
    pl = os.environ.get("MTEVAL_PL") or str(Path(__file__).resolve().parents[1] / "dstc" / "3rdparty" / "mteval-v14c.pl")
    if not (shutil.which("perl") and Path(pl).is_file()):
        print("perl mteval: skipped (no perl or no mteval-v14c.pl; set MTEVAL_PL to compare)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_artifacts(corpus, tmp)
        t = time.perf_counter()
        proc = subprocess.run(["perl", pl, "-s", "src.xml", "-t", "hyp.xml", "-r", "ref.xml"], cwd=tmp,
                              capture_output=True, text=True)
        dt = time.perf_counter() - t
    if proc.returncode != 0:
        print(f"perl mteval: failed ({proc.stderr.strip().splitlines()[-1:]})")
        return
    lines = proc.stdout.splitlines()
    print(f"perl mteval: {dt:.2f} s  NIST {lines[-6].split()[1:5]}  BLEU {lines[-4].split()[1:5]}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=6000)
    p.add_argument("--refs", type=int, default=15)
    p.add_argument("--profile", default="dialogpt")
    p.add_argument("--no-meteor", action="store_true")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import load, machine, summary, write_json

    hyps, refs = make_corpus(args.n, args.refs)
    print(f"corpus: {args.n} examples x {args.refs} refs, profile {args.profile}; {machine()}; before: {load()}")
    times: dict[str, list] = {"prepare": [], "metrics": [], "wall": [], "cpu": [], "with METEOR": []}
    for _ in range(args.rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        corpus = Corpus.build(hyps, refs, args.profile)
        t1 = time.perf_counter()
        scores = evaluate_corpus(corpus, meteor=False)
        t2 = time.perf_counter()
        times["prepare"].append(t1 - t0)
        times["metrics"].append(t2 - t1)
        times["wall"].append(t2 - t0)
        times["cpu"].append(time.process_time() - c0)
        if not args.no_meteor:
            t3 = time.perf_counter()
            scores = evaluate_corpus(corpus, meteor=True)
            times["with METEOR"].append(time.perf_counter() - t3)
    print(f"{args.rounds} rounds, seconds median [min-max]; after: {load()} (wall > CPU: the machine is shared)")
    rows = []
    for name, label in (("prepare", "prepare (clean_str + slots)"), ("metrics", "NIST/BLEU + entropy/distinct/len"),
                        ("wall", "total without METEOR, wall"), ("cpu", "total without METEOR, CPU"),
                        ("with METEOR", f"with METEOR (jar overlapped with Python) [{scores.get('meteor_status')}]")):
        if times[name]:
            med, lo, hi = summary(times[name])
            print(f"  {label}: {med:.2f} s [{lo:.2f}-{hi:.2f}]")
            rows.append(dict(name=name, seconds=med, lo=lo, hi=hi, examples=args.n, refs=args.refs))
    print(format_table(scores, name="bench"))
    perl_mteval(corpus)
    write_json(args.json, "dstc", rows)


if __name__ == "__main__":
    main()
