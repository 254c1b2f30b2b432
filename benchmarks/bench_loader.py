"""Training loader throughput (features/s, one process) against an original-like loader.

    python benchmarks/bench_loader.py [--lines 60000] [--batch_size 32] [--epochs 2]

Builds a DB from real conversations (chitchat-dataset, see bench_prepro.py), then times full
epochs of BucketingDataLoader, and side by side a loader written the way the original's was
(Python json, per-feature tensors, torch DataLoader + pad_sequence collate) over the same DB.
Goal: >= 20,000 features/s.
"""
from __future__ import annotations

import argparse
import gzip
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


def original_like_epoch(db, batch_size: int, max_len: int, rng: random.Random) -> int:
    """The original's loop: json.loads, DataLoader(batch_sampler=BucketSampler), pad_sequence."""
    import torch
    from torch.nn.utils.rnn import pad_sequence
    from torch.utils.data import DataLoader
    from lsp_data.db import chunk_keys
    from lsp_data.loader import BucketSampler

    def collate(feats):
        def pad(key, value):
            return pad_sequence([torch.tensor(f[key], dtype=torch.long) for f in feats],
                                batch_first=True, padding_value=value)
        return pad("input_ids", 0), pad("position_ids", 0), pad("token_type_ids", 0), pad("lm_labels", -1)

    n = 0
    keys = chunk_keys(db)
    rng.shuffle(keys)
    for key in keys:
        chunk = [f for f in json.loads(gzip.decompress(db[key]).decode("utf-8")) if f["input_len"] <= max_len]
        sampler = BucketSampler([f["input_len"] for f in chunk], 100 * batch_size, batch_size, True, True, rng)
        for batch in DataLoader(chunk, batch_sampler=sampler, num_workers=0, collate_fn=collate):
            n += len(batch[0])
    return n


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=60_000)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()

    from bench_prepro import build_corpus
    from lsp_data.db import open_db
    from lsp_data.loader import BucketingDataLoader
    from lsp_data.prepro import build_db

    tmp = Path(tempfile.mkdtemp(prefix="bench_loader."))
    try:
        corpus = tmp / "bench.tsv"
        build_corpus(corpus, args.lines)
        db, report = build_db(corpus, chunk_size=16384, progress=False)
        print(f"DB: {report['features']:,} features in {report['chunks']} chunks from {args.lines:,} lines")

        loader = BucketingDataLoader(db, args.batch_size, 128, seed=0)
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for _ in range(args.epochs):
            for batch in loader:
                n += len(batch[0])
        ours, ours_cpu = n / (time.perf_counter() - t0), n / (time.process_time() - c0)

        shelf, _ = open_db(db)
        rng = random.Random(0)
        t0, c0, m = time.perf_counter(), time.process_time(), 0
        for _ in range(args.epochs):
            m += original_like_epoch(shelf, args.batch_size, 128, rng)
        base, base_cpu = m / (time.perf_counter() - t0), m / (time.process_time() - c0)
        assert m == n, (m, n)
        print(f"BucketingDataLoader: {ours:,.0f} features/s wall, {ours_cpu:,.0f} per CPU-second "
              f"({n:,} features, {args.epochs} epochs, batch {args.batch_size}, {len(loader)} batches/epoch)")
        print(f"original-like loader: {base:,.0f} features/s wall, {base_cpu:,.0f} per CPU-second; "
              f"ratio {ours / base:.1f}x wall, {ours_cpu / base_cpu:.1f}x CPU; goal 20,000 features/s: "
              f"{'met' if ours >= 20_000 else 'met per CPU-second' if ours_cpu >= 20_000 else 'NOT met'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
