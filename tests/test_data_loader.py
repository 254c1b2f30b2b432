"""Loaders: golden eval batches and training row order, bucketing semantics, ranks, resume."""
import collections
import json
import random

import pytest
import torch

from data_loader import (BucketSampler, BucketingDataLoader, DistributedBucketingDataLoader,
                         DynamicBatchingLoader, collate)
from lsp_data.db import ChunkWriter, DBError, write_meta
from lsp_data.features import feature_tail
from lsp_data.prepro import build_db
from lsp_data.loader import n_batches
from lsp_model.tokenizer import load_tokenizer

ID0 = 1000  # synthetic features carry their conv_id as input_ids[0] - ID0


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def make_db(folder, lens, chunk_size, max_seq_len=128, stats=True, identity="tok-a"):
    """A DB of synthetic features (input_ids[0] = ID0 + conv_id, no zero ids)."""
    folder.mkdir(parents=True)
    w = ChunkWriter(folder, chunk_size)
    for i, n in enumerate(lens):
        w.start_line()
        f = {"input_ids": [ID0 + i] + [7] * (n - 1), "position_ids": list(range(n)),
             "token_type_ids": [1] * n, "lm_labels": [5] * n, "weights": [1.0] * n, "input_len": n}
        w.extend([(n, feature_tail(f))])
    chunks = w.close()
    meta = {"n_example": len(lens), "chunk_size": chunk_size, "max_seq_len": max_seq_len,
            "reverse": False, "two_turn": False}
    if stats:
        meta.update(format_version=1, tokenizer_identity=identity, chunks=chunks)
    write_meta(folder, meta)
    return folder


LENS = [8 * random.Random(i).randint(1, 20) for i in range(1000)]  # 8..160, ~20% over 128
KEPT = {i for i, n in enumerate(LENS) if n <= 128}


@pytest.fixture(scope="module")
def syn_db(tmp_path_factory):
    return make_db(tmp_path_factory.mktemp("syn") / "syn.128len.db", LENS, 100)


def ids_of(batch):
    return (batch[0][:, 0] - ID0).tolist()


def run_epoch(loader):
    return [b for b in loader]


# ------------------------------------------------------------------------- golden behaviour

def test_eval_batches_golden(golden, tok):
    loader = DynamicBatchingLoader(golden / "train/eval.tsv", tok, True, 8, 128)
    gold = torch.load(golden / "train/eval_batches.pt", weights_only=True)
    got = list(loader)
    assert len(got) == len(gold) == 5 and sum(len(b[0]) for b in got) == 39
    names = ["input_ids", "position_ids", "token_type_ids", "labels", "context_len", "response_len"]
    for b, g in zip(got, gold):
        for t, name in zip(b, names):
            assert t.dtype == torch.long and torch.equal(t, g[name]), name
    assert len(loader) == 6  # ceil(41 lines / 8), as the original's `wc -l`


def test_training_row_order_is_the_originals(golden, tok, tmp_path):
    """Seed 42 reproduces the original's per-step row order (ties broken by the seeded shuffle)."""
    corpus = tmp_path / "train.tsv"
    corpus.write_bytes((golden / "train/train.tsv").read_bytes())
    db, _ = build_db(corpus, tokenizer=tok, progress=False)
    feats = [json.loads(line) for line in (golden / "train/features.128.jsonl").open()]
    loader = BucketingDataLoader(db, 34, 128, seed=42)
    assert len(loader) == 1
    for line in (golden / "train/noam/steps.jsonl").open():
        (batch,) = run_epoch(loader)  # one full batch per epoch
        width = batch[0].shape[1]
        conv = {tuple(f["input_ids"] + [0] * (width - f["input_len"])): f["conv_id"]
                for f in feats if f["input_len"] <= width}
        rows = [conv[tuple(r)] for r in batch[0].tolist()]
        assert rows == json.loads(line)["micro_batches_conv_ids"][0]


def test_golden_db_drops_exactly_the_long_features(golden, tok, tmp_path):
    corpus = tmp_path / "train.tsv"
    corpus.write_bytes((golden / "prepro/train.tsv").read_bytes())
    db, _ = build_db(corpus, tokenizer=tok, progress=False)
    feats = [json.loads(line) for line in (golden / "prepro/features.128.jsonl").open()]
    by_ids = collections.defaultdict(list)
    for f in feats:
        by_ids[tuple(f["input_ids"])].append(f["conv_id"])
    loader = BucketingDataLoader(db, 1, 128, bucket=1)
    got = collections.Counter()
    for b in loader:
        got[tuple(b[0][0].tolist())] += 1
    seen = sorted(c for ids, n in got.items() for c in by_ids[ids][:n])
    dropped = json.loads((golden / "prepro/skipped.128.json").read_text())[
        "features_dropped_by_loader_input_len_gt_max_seq_len"]
    assert sorted(set(range(len(feats))) - set(seen)) == sorted(dropped) and len(dropped) == 63
    assert len(loader) == len(seen) == 533


# ------------------------------------------------------------------------------ semantics

def test_bucketing_drop_long_drop_last_and_len(syn_db):
    loader = BucketingDataLoader(syn_db, 7, 128, bucket=3)
    batches = run_epoch(loader)
    assert len(batches) == len(loader) == sum(n_batches(n, 21, 7, True) for n in
                                              [len([i for i in KEPT if c * 100 <= i < c * 100 + 100])
                                               for c in range(10)])
    seen = [i for b in batches for i in ids_of(b)]
    assert len(seen) == len(set(seen)) and set(seen) <= KEPT and len(KEPT) - len(seen) < 10 * 7
    for b in batches:
        assert all(t.dtype == torch.long and t.shape == b[0].shape for t in b) and len(b[0]) == 7
        lens = (b[0] != 0).sum(1).tolist()
        assert lens == sorted(lens, reverse=True) and b[0].shape[1] == lens[0]  # padded to the longest
        assert lens == [LENS[i] for i in ids_of(b)]
        assert ((b[3] == -1) == (b[0] == 0)).all() and ((b[1] == 0) == (torch.arange(b[0].shape[1]) == 0) |
                                                        (b[0] == 0)).all()


def test_collate_pads_like_the_original():
    feats = [{"input_ids": [5, 6, 7], "position_ids": [0, 1, 2], "token_type_ids": [0, 1, 1], "lm_labels": [-1, 7, 9]},
             {"input_ids": [8], "position_ids": [0], "token_type_ids": [2], "lm_labels": [3]}]
    ids, pos, types, labels = collate(feats)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and pos.tolist() == [[0, 1, 2], [0, 0, 0]]
    assert types.tolist() == [[0, 1, 1], [2, 0, 0]] and labels.tolist() == [[-1, 7, 9], [3, -1, -1]]
    assert {t.dtype for t in (ids, pos, types, labels)} == {torch.long}


def test_bucket_sampler():
    lens = [3, 9, 1, 7, 5, 2, 8, 4, 6, 10, 11]
    s = BucketSampler(lens, bucket_size=4, batch_size=2, droplast=False, shuffle=True, rng=random.Random(0))
    batches = list(s)
    assert len(batches) == len(s) == 6 and sorted(i for b in batches for i in b) == list(range(11))
    assert all(lens[b[0]] >= lens[b[-1]] for b in batches)
    s = BucketSampler(lens, bucket_size=4, batch_size=3, droplast=True, shuffle=False)
    assert list(s) == [[1, 3, 0], [6, 4, 7], [10, 9, 8]] and len(s) == 3


def test_distributed_ranks_are_disjoint_and_cover(syn_db):
    for ranks in (3, 16):  # 10 chunks: by chunk, then by feature (more ranks than chunks)
        per_rank = []
        for r in range(ranks):
            loader = DistributedBucketingDataLoader(r, ranks, syn_db, 1, 128, bucket=5)
            assert loader.split_features == (ranks > 10)
            ids = [i for b in loader for i in ids_of(b)]
            assert len(ids) == len(loader)
            per_rank.append(set(ids))
        assert sum(map(len, per_rank)) == len(set().union(*per_rank)) == len(KEPT)
        assert set().union(*per_rank) == KEPT
        if ranks == 16:  # even: at most one feature per chunk apart
            assert max(map(len, per_rank)) - min(map(len, per_rank)) <= 10


def test_seeded_reproducibility(syn_db):
    def two_epochs(seed):
        loader = BucketingDataLoader(syn_db, 4, 128, seed=seed)
        return [ids_of(b) for _ in range(2) for b in loader]
    a, b = two_epochs(1), two_epochs(1)
    assert a == b and a[:len(a) // 2] != a[len(a) // 2:]  # same per seed, new order per epoch
    assert two_epochs(2) != a


@pytest.mark.parametrize("k", [0, 3, 11, 58])
def test_state_dict_resumes_exactly(syn_db, tmp_path, k):
    ref = BucketingDataLoader(syn_db, 4, 128, bucket=2, seed=3)
    run_epoch(ref)  # start in the second epoch
    it = iter(ref)
    head = [next(it) for _ in range(k)]
    path = tmp_path / "state.pt"
    torch.save(ref.state_dict(), path)
    rest = [ids_of(b) for b in it] + [ids_of(b) for b in ref]  # rest of epoch 1, then epoch 2
    new = BucketingDataLoader(syn_db, 4, 128, bucket=2, seed=999)
    new.load_state_dict(torch.load(path, weights_only=True))
    got = [ids_of(b) for b in new] + [ids_of(b) for b in new]
    assert len(head) == k and got == rest
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1 and state["offset"] == k and len(state["chunk_order"]) == 10
    with pytest.raises(ValueError, match="batch_size=4"):
        BucketingDataLoader(syn_db, 8, 128).load_state_dict(state)


def test_original_db_without_stats(tmp_path):
    """A DB with only the original's meta keys: len() scans it; iteration is the same."""
    a = make_db(tmp_path / "a.128len.db", LENS[:300], 64)
    b = make_db(tmp_path / "b.128len.db", LENS[:300], 64, stats=False)
    la, lb = BucketingDataLoader(a, 4, 128), BucketingDataLoader(b, 4, 128)
    assert len(la) == len(lb) > 0
    assert [ids_of(x) for x in la] == [ids_of(x) for x in lb]


# --------------------------------------------------------------------------------- errors

def test_missing_db_names_path_and_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"DB not found: .*train\.64len\.db \(build it with: "
                                                r"python prepro\.py --corpus .*train\.tsv --max_seq_len 64\)"):
        BucketingDataLoader(tmp_path / "train.64len.db", 8, 64)


def test_wrong_max_seq_len_or_tokenizer(syn_db):
    with pytest.raises(DBError, match="built with --max_seq_len 128.*asked for max_seq_len 64"):
        BucketingDataLoader(syn_db, 8, 64)
    with pytest.raises(DBError, match="another tokenizer"):
        BucketingDataLoader(syn_db, 8, 128, tokenizer_identity="tok-b")
    BucketingDataLoader(syn_db, 8, 128, tokenizer_identity="tok-a")


def test_eval_loader_bad_input(tmp_path, tok):
    with pytest.raises(FileNotFoundError, match="eval file not found"):
        DynamicBatchingLoader(tmp_path / "nope.tsv", tok, True, 8, 128)
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"hi\tthere\n\xff\xfe\tx\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:2: 'utf-8' codec"):
        list(DynamicBatchingLoader(bad, tok, True, 1, 128))


def test_fast_chunk_parsing_equals_json(golden):
    """The regex+numpy chunk parser gives the columns a full JSON parse gives, whatever the
    JSON spacing (the original's, or compact)."""
    import numpy as np
    from lsp_data.loader import FIELDS, _columns, _columns_fast
    feats = [json.loads(line) for line in (golden / "prepro/features.64.jsonl").open()]  # NaN weights too
    want = _columns(feats)
    for raw in (json.dumps(feats).encode(), json.dumps(feats, separators=(",", ":")).encode()):
        got = _columns_fast(raw)
        assert np.array_equal(got["input_len"], want["input_len"])
        for key, _ in FIELDS:
            (gf, gs, gn), (wf, ws, wn) = got[key], want[key]
            assert np.array_equal(gn, wn)
            assert all(np.array_equal(gf[a:a + n], wf[b:b + n]) for a, b, n in zip(gs, ws, wn))
    # not the expected shape: None, and the loader parses the JSON in full instead
    assert _columns_fast(b'[{"input_ids": [1, "x"], "input_len": 8}]') is None
    assert _columns_fast(json.dumps([{"input_ids": [], "input_len": 0}]).encode()) is None


def test_collate_reproduces_golden_batch(golden):
    """golden/model/batch.pt: 8 prepro features padded by the original's collate."""
    gold = torch.load(golden / "model/batch.pt", weights_only=True)
    feats = {json.loads(line)["conv_id"]: json.loads(line) for line in (golden / "prepro/features.128.jsonl").open()}
    got = collate([feats[i] for i in gold["conv_ids"].tolist()])
    for t, name in zip(got, ["input_ids", "position_ids", "token_type_ids", "labels"]):
        assert torch.equal(t, gold[name]), name
