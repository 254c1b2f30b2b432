"""Training loader throughput (features/s, one process) against an original-like loader.

    python benchmarks/bench_loader.py [--lines 60000] [--batch_size 32] [--rounds 3] [--json FILE]

Builds a DB from real conversations (chitchat-dataset, see bench_prepro.py), then times full
epochs of BucketingDataLoader, and side by side a loader written the way the original's was
(Python json, per-feature tensors, torch DataLoader + pad_sequence collate) over the same DB.
Each round runs one epoch of each, interleaved; features/s median [min-max] over the rounds (wall
and per CPU-second), per-round ratios, and the load average. Goal: >= 20,000 features/s.
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=60_000)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="rounds of one epoch each, interleaved")
    p.add_argument("--json")
    args = p.parse_args(argv)

    from bench_prepro import build_corpus
    from common import load, machine, ratio_rounds, summary, write_json
    from lsp_data.db import open_db
    from lsp_data.loader import BucketingDataLoader
    from lsp_data.prepro import build_db

    tmp = Path(tempfile.mkdtemp(prefix="bench_loader."))
    try:
        corpus = tmp / "bench.tsv"
        build_corpus(corpus, args.lines)
        db, report = build_db(corpus, chunk_size=16384, progress=False)
        print(f"DB: {report['features']:,} features in {report['chunks']} chunks from {args.lines:,} lines; "
              f"{machine()}; before: {load()}")
        loader = BucketingDataLoader(db, args.batch_size, 128, seed=0)
        shelf, _ = open_db(db)
        rng = random.Random(0)
        epochs = {"ours": lambda: sum(len(batch[0]) for batch in loader),
                  "original-like": lambda: original_like_epoch(shelf, args.batch_size, 128, rng)}
        wall, cpu, counts = ({k: [] for k in epochs} for _ in range(3))
        for _ in range(args.rounds):
            for k, epoch in epochs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                counts[k].append(epoch())
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
        assert counts["ours"] == counts["original-like"], counts
        n = counts["ours"][0]
        print(f"{args.rounds} rounds of one epoch ({n:,} features, batch {args.batch_size}, {len(loader)} batches); "
              f"after: {load()}")
        rows = []
        for k in epochs:
            fs, fc = summary([n / x for x in wall[k]]), summary([n / x for x in cpu[k]])
            rw = summary(ratio_rounds(wall["original-like"], wall[k]))
            rc = summary(ratio_rounds(cpu["original-like"], cpu[k]))
            print(f"  {k:13} {fs[0]:8,.0f} [{fs[1]:,.0f}-{fs[2]:,.0f}] features/s wall, {fc[0]:8,.0f} "
                  f"[{fc[1]:,.0f}-{fc[2]:,.0f}] per CPU-second; x{rw[0]:.1f} [{rw[1]:.1f}-{rw[2]:.1f}] the "
                  f"original-like loader's speed (CPU x{rc[0]:.1f} [{rc[1]:.1f}-{rc[2]:.1f}])")
            rows.append(dict(name=k, features_per_s=fs[0], lo=fs[1], hi=fs[2], features_per_cpu_s=fc[0],
                             cpu_lo=fc[1], cpu_hi=fc[2], ratio=rw[0], ratio_lo=rw[1], ratio_hi=rw[2],
                             cpu_ratio=rc[0], cpu_ratio_lo=rc[1], cpu_ratio_hi=rc[2], batch_size=args.batch_size))
        ours = rows[0]["features_per_s"]
        print(f"goal 20,000 features/s: {'met' if ours >= 20_000 else 'NOT met'}")
        write_json(args.json, "loader", rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
