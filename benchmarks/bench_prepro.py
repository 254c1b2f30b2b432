"""prepro throughput: lines/s and peak memory, 1 vs 2 workers, against the original's speed.

    python benchmarks/bench_prepro.py [--lines 200000] [--baseline_lines 20000]

Corpus: real conversations (chitchat-dataset, plus ../shared/data/reddit-t1000 when present),
in DialoGPT's TSV format, repeated to --lines. The baseline mimics the original prepro.py in
this process: a pure-Python GPT-2 byte-level BPE (as pytorch-pretrained-bert's, written here
only for the comparison), the same feature logic, Python json and gzip level 9; it runs on a
subset and its lines/s is extrapolated. Its token ids are checked against the fast tokenizer.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


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


def build_corpus(path: Path, n_lines: int) -> None:
    rng = random.Random(0)
    lines = chitchat_lines(rng)
    reddit = REPO.parent / "shared" / "data" / "reddit-t1000" / "dialogpt.t1000.txt"
    if reddit.is_file():
        lines += reddit.read_text(encoding="utf-8").splitlines()
    # conversation order, as an extractor or a user's export writes it (turns repeat in nearby lines)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_lines):
            f.write(lines[i % len(lines)] + "\n")


# ---------------------------------------------------------------------- memory sampling

def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakRSS:
    """Peak resident memory of this process and of this process + its children (MB)."""

    def __enter__(self):
        import multiprocessing
        self.main = self.total = 0
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.05):
                me = _rss_kb(os.getpid())
                kids = sum(_rss_kb(p.pid) for p in multiprocessing.active_children())
                self.main, self.total = max(self.main, me), max(self.total, me + kids)
        self._t = threading.Thread(target=sample, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.main, self.total = self.main / 1024, self.total / 1024


def _children_cpu() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------- the original, mimicked

def pure_python_bpe(vocab_path, merges_path):
    """A minimal GPT-2 byte-level BPE encoder in pure Python (benchmark baseline only)."""
    import regex
    encoder = json.loads(Path(vocab_path).read_text(encoding="utf-8"))
    merges = Path(merges_path).read_text(encoding="utf-8").split("\n")[1:-1]
    ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
    # bytes -> printable unicode chars: printable Latin-1 map to themselves, the rest to 256+
    byte_map, n = {}, 0
    base = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    for b in range(256):
        if b in base:
            byte_map[b] = chr(b)
        else:
            byte_map[b] = chr(256 + n)
            n += 1
    pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    cache: dict[str, list[str]] = {}

    def bpe(token: str) -> list[str]:
        if token in cache:
            return cache[token]
        word = list(token)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            first, second = best
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = new
        cache[token] = word
        return word

    def encode(text: str) -> list[int]:
        ids = []
        for tok in pat.findall(text):
            ids += [encoder[t] for t in bpe("".join(byte_map[b] for b in tok.encode("utf-8")))]
        return ids
    return encode


def original_like(corpus: Path, n_lines: int, encode, max_len: int = 128, chunk_size: int = 65536):
    """The original's loop: per line, per turn encode, features as dicts, chunks as json + gzip 9."""
    from lsp_data.features import make_features
    from lsp_data.tsv import LineError, parse_line
    chunk, n_example, blobs = [], 0, []
    with open(corpus, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i == n_lines:
                break
            if len(chunk) >= chunk_size:
                blobs.append(gzip.compress(json.dumps(chunk[:chunk_size]).encode("utf-8")))
                chunk = chunk[chunk_size:]
            try:
                weights, texts = parse_line(line)
            except LineError:
                continue
            if len(weights) < 2:
                continue
            for feat in make_features(weights, [encode(t) for t in texts], max_len, 50256):
                chunk.append({"conv_id": n_example, **feat})
                n_example += 1
    blobs.append(gzip.compress(json.dumps(chunk).encode("utf-8")))
    return n_example


# ------------------------------------------------------------------------------------ main

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--baseline_lines", type=int, default=20_000)
    p.add_argument("--workers", default="1,2")
    args = p.parse_args()

    from lsp_data.prepro import build_db
    from lsp_model.tokenizer import find_bpe_files, load_tokenizer
    tok = load_tokenizer()
    tmp = Path(tempfile.mkdtemp(prefix="bench_prepro."))
    try:
        corpus = tmp / "bench.tsv"
        build_corpus(corpus, args.lines)
        print(f"corpus: {args.lines:,} lines, {corpus.stat().st_size / 1e6:.1f} MB "
              f"(chitchat-dataset + reddit-t1000, repeated)")

        encode = pure_python_bpe(*find_bpe_files())
        with open(corpus, encoding="utf-8") as f:  # the baseline must tokenize exactly as we do
            sample = [t for line, _ in zip(f, range(300)) for t in line.replace("\t", " EOS ").split(" EOS ")]
        assert all(encode(t) == tok.encode(t, add_special_tokens=False).ids for t in sample), "baseline BPE differs"
        t0, c0 = time.perf_counter(), time.process_time()
        original_like(corpus, args.baseline_lines, encode)
        base = args.baseline_lines / (time.perf_counter() - t0)
        base_cpu = args.baseline_lines / (time.process_time() - c0)
        print(f"original-like (pure-Python BPE, gzip 9), {args.baseline_lines:,} lines: {base:,.0f} lines/s "
              f"wall, {base_cpu:,.0f} lines per CPU-second")

        results = {}
        for w in map(int, args.workers.split(",")):
            out = tmp / f"w{w}.db"
            with PeakRSS() as mem:
                t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
                _, report = build_db(corpus, out, tokenizer=tok, workers=w, progress=False)
                dt = time.perf_counter() - t0
                cpu = time.process_time() - c0 + _children_cpu() - k0
            results[w] = args.lines / dt
            print(f"build_db workers={w}: {dt:.1f} s, {results[w]:,.0f} lines/s wall "
                  f"({results[w] / base:.1f}x baseline), {args.lines / cpu:,.0f} lines per CPU-second "
                  f"({args.lines / cpu / base_cpu:.1f}x baseline); {report['features']:,} features, "
                  f"{report['chunks']} chunks; peak RSS main {mem.main:,.0f} MB, main+workers {mem.total:,.0f} MB")
            shutil.rmtree(out)
        best = max(results.values())
        print(f"best: {best:,.0f} lines/s = {best / base:.1f}x the baseline measured here; "
              f"{best / 2500:.1f}x the original's ~2,500 lines/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
