"""Loaders over the feature DB (training) and over a raw TSV (evaluation), as the original's.

Training (`BucketingDataLoader`, `DistributedBucketingDataLoader`), one `for` loop = one epoch:
  * the chunk order is shuffled;
  * per chunk, features with input_len > max_seq_len are dropped (prepro's overflow windows);
  * ids are shuffled, cut into buckets of bucket*batch_size, each sorted by length descending
    (stable, so ties keep the shuffled order), sliced into batches, short batches dropped,
    and the batch order shuffled;
  * each batch is collated to (input_ids, position_ids, token_type_ids, labels) LongTensors,
    padded with 0 (labels -1).
The random draws are the original's, in the original's order, but from one `random.Random(seed)`
owned by the loader instead of the global `random`: the data order is reproducible, and
`state_dict()` / `load_state_dict()` resume an epoch exactly at a batch.

Distributed: with at least as many chunks as ranks, rank r reads chunks r, r+R, ... (the
original). With fewer chunks than ranks every rank reads every chunk and keeps the features
r, r+R, ... of it (after the length filter), so no rank sits idle; the ranks are disjoint and
together cover all the data either way.

Eval (`DynamicBatchingLoader`): raw `src<TAB>tgt[<TAB>tgt...]` lines, one example per target,
whole lines accumulated until batch_size examples; the final partial batch is dropped.
"""
from __future__ import annotations

import itertools
import math
import re
import random
from pathlib import Path

import numpy as np
import torch

from .db import DBError, check_meta, chunk_keys, chunk_sizes, open_db, read_chunk, read_chunk_json
from .features import eval_feature
from .tsv import decode_line, iter_raw_lines, line_ref
from lsp_model.defaults import SEED


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    """Right-pad int lists into a [B, T] LongTensor (pad_sequence, batch_first)."""
    lens = np.fromiter(map(len, rows), np.int64, len(rows))
    width = int(lens.max()) if len(rows) else 0
    out = np.full((len(rows), width), value, np.int64)
    out[np.arange(width) < lens[:, None]] = np.fromiter(
        itertools.chain.from_iterable(rows), np.int64, int(lens.sum()))
    return torch.from_numpy(out)


def collate(features: list[dict]):
    """(input_ids, position_ids, token_type_ids, labels); weights are not used by training."""
    return (_pad([f["input_ids"] for f in features], 0),
            _pad([f["position_ids"] for f in features], 0),
            _pad([f["token_type_ids"] for f in features], 0),
            _pad([f["lm_labels"] for f in features], -1))


FIELDS = (("input_ids", 0), ("position_ids", 0), ("token_type_ids", 0), ("lm_labels", -1))  # pad values
_LIST_RE = {k: re.compile(rb'"' + k.encode() + rb'":\s*\[([^\]]*)\]') for k, _ in FIELDS}
_LEN_RE = re.compile(rb'"input_len":\s*(\d+)')


def _columns_fast(raw: bytes) -> dict | None:
    """Parse the id lists of a chunk's JSON straight into flat int32 arrays (no Python ints).

    Features are JSON objects of numbers only, so each list body is found by a regex, and all
    bodies of a field are joined with a sentinel (no id, position, type or label is -9) and
    parsed by one numpy call. None if the chunk does not look as expected.
    """
    n = raw.count(b'"input_len"')
    lens = np.array(_LEN_RE.findall(raw), dtype=np.int64)
    if len(lens) != n or n == 0 or b"[]" in raw:
        return None
    cols = {"input_len": lens}
    for key, _ in FIELDS:
        bodies = _LIST_RE[key].findall(raw)
        if len(bodies) != n:
            return None
        try:
            flat = np.fromstring(b", -9, ".join(bodies).decode(), dtype=np.int32, sep=",")
        except ValueError:
            return None
        cuts = np.flatnonzero(flat == -9)
        if len(cuts) != n - 1:
            return None
        starts = np.concatenate([[0], cuts + 1])
        sizes = np.diff(np.append(starts, len(flat))) - np.append(np.ones(n - 1, np.int64), 0)
        cols[key] = (flat, starts, sizes)
    return cols


def _columns(features: list[dict]) -> dict:
    """The same columns from parsed feature dicts (the general path)."""
    cols = {"input_len": np.array([f["input_len"] for f in features], dtype=np.int64)}
    for key, _ in FIELDS:
        sizes = np.fromiter((len(f[key]) for f in features), np.int64, len(features))
        flat = np.fromiter(itertools.chain.from_iterable(f[key] for f in features), np.int32, int(sizes.sum()))
        cols[key] = (flat, np.cumsum(sizes) - sizes, sizes)
    return cols


def _gather(col, rows: np.ndarray, value: int) -> torch.Tensor:
    """Rows of a flat column, right-padded into a [B, T] LongTensor."""
    flat, starts, sizes = col
    lens = sizes[rows]
    width = int(lens.max()) if len(rows) else 0
    span = np.arange(width)
    mask = span < lens[:, None]
    out = np.full((len(rows), width), value, np.int64)
    out[mask] = flat[(starts[rows][:, None] + span)[mask]]
    return torch.from_numpy(out)


class BucketSampler:
    """Batches of example ids, length-bucketed (the original's BucketSampler).

    rng: the random.Random to draw from (default: the global `random`, as the original).
    """

    def __init__(self, lens, bucket_size: int, batch_size: int, droplast: bool = False,
                 shuffle: bool = True, rng: random.Random | None = None):
        self.lens, self.bucket_size, self.batch_size = lens, bucket_size, batch_size
        self.droplast, self.shuffle, self.rng = droplast, shuffle, rng or random

    def __iter__(self):
        ids = list(range(len(self.lens)))
        if self.shuffle:
            self.rng.shuffle(ids)
        batches = []
        for start in range(0, len(ids), self.bucket_size):
            bucket = sorted(ids[start:start + self.bucket_size], key=self.lens.__getitem__, reverse=True)
            batches += [bucket[i:i + self.batch_size] for i in range(0, len(bucket), self.batch_size)]
        if self.droplast:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            self.rng.shuffle(batches)
        return iter(batches)

    def __len__(self):
        return n_batches(len(self.lens), self.bucket_size, self.batch_size, self.droplast)


def n_batches(n: int, bucket_size: int, batch_size: int, droplast: bool) -> int:
    full, rest = divmod(n, bucket_size)
    per = (lambda s: s // batch_size) if droplast else (lambda s: -(-s // batch_size))
    return full * per(bucket_size) + per(rest)


def _skip_draws(rng: random.Random, n: int, n_batch: int) -> None:
    """Consume exactly the draws BucketSampler makes for a chunk of n ids and n_batch batches."""
    rng.shuffle(list(range(n)))
    rng.shuffle(list(range(n_batch)))


class BucketingDataLoader:
    """Length-bucketed training batches from a prepro DB, yielding 4-tuples of LongTensors.

    tokenizer_identity: if given, the DB must have been built with that tokenizer
    (lsp_model.tokenizer.tokenizer_identity). The DB's max_seq_len must equal max_seq_len.
    """

    def __init__(self, db_name, batch_size: int, max_seq_len: int, bucket: int = 100,
                 shuffle: bool = True, seed: int = SEED, tokenizer_identity: str | None = None,
                 rank: int = 0, num_replica: int = 1):
        if batch_size < 1 or bucket < 1:
            raise ValueError(f"batch_size and bucket must be >= 1 (got {batch_size}, {bucket})")
        if not 0 <= rank < num_replica:
            raise ValueError(f"rank {rank} not in [0, num_replica={num_replica})")
        self.db_name = Path(db_name)
        self.db, self.meta = open_db(db_name)
        try:
            check_meta(self.db.path, self.meta, max_seq_len, tokenizer_identity)
        except DBError:
            self.db.close()
            raise
        self.batch_size, self.max_len = batch_size, max_seq_len
        self.bucket_size = bucket * batch_size
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.num_replica = rank, num_replica
        keys = chunk_keys(self.db)
        if not keys:
            raise DBError(f"{db_name}: no chunk_N keys in the DB")
        # Fewer chunks than ranks: split the features of every chunk instead of the chunks.
        self.split_features = num_replica > len(keys)
        self.keys = keys if self.split_features else keys[rank::num_replica]
        self._sizes = None
        self._rng = random.Random(seed)
        self._epoch, self._offset, self._epoch_state = 0, 0, self._rng.getstate()

    # -- sizes (from meta.json; original DBs are scanned once, on first need)
    def _n_kept(self, key: str) -> int:
        if self._sizes is None:
            self._sizes = chunk_sizes(self.db, self.meta)
        n = sum(c for length, c in self._sizes[key].items() if length <= self.max_len)
        return len(range(self.rank, n, self.num_replica)) if self.split_features else n

    def _chunk_batches(self, key: str) -> int:
        return n_batches(self._n_kept(key), self.bucket_size, self.batch_size, True)

    def __len__(self) -> int:
        """Batches per epoch (on this rank)."""
        return sum(self._chunk_batches(k) for k in self.keys)

    def _load(self, key: str):
        """(columns, ids of the kept features in chunk order) of one chunk."""
        cols = _columns_fast(read_chunk_json(self.db, key))
        if cols is None:  # unusual formatting: parse the JSON in full
            cols = _columns(read_chunk(self.db, key))
        kept = np.flatnonzero(cols["input_len"] <= self.max_len)
        return cols, (kept[self.rank::self.num_replica] if self.split_features else kept)

    def _order(self, rng: random.Random) -> list[str]:
        keys = list(self.keys)
        if self.shuffle:
            rng.shuffle(keys)
        return keys

    def __iter__(self):
        """One epoch, resuming at the current offset (see state_dict)."""
        rng = self._rng
        rng.setstate(self._epoch_state)
        skip = self._offset
        for key in self._order(rng):
            if skip:
                n = self._chunk_batches(key)
                if skip >= n:  # whole chunk already consumed: replay its draws without reading it
                    if self.shuffle:
                        _skip_draws(rng, self._n_kept(key), n)
                    skip -= n
                    continue
            cols, kept = self._load(key)
            sampler = BucketSampler(cols["input_len"][kept].tolist(), self.bucket_size, self.batch_size,
                                    droplast=True, shuffle=self.shuffle, rng=rng)
            for batch in itertools.islice(sampler, skip, None):
                rows = kept[batch]
                self._offset += 1
                yield tuple(_gather(cols[k], rows, v) for k, v in FIELDS)
            skip = 0
        self._epoch += 1
        self._offset = 0
        self._epoch_state = rng.getstate()

    # -- resume
    def state_dict(self) -> dict:
        """Position in the data: epoch, batches done in it, and the RNG state it started from."""
        version, internal, gauss = self._epoch_state
        rng = random.Random()
        rng.setstate(self._epoch_state)
        return {"epoch": self._epoch, "offset": self._offset, "chunk_order": self._order(rng),
                "rng_state": [version, list(internal), gauss], "seed": self.seed,
                "batch_size": self.batch_size, "max_seq_len": self.max_len, "bucket_size": self.bucket_size,
                "rank": self.rank, "num_replica": self.num_replica, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict) -> None:
        for k in ("batch_size", "max_seq_len", "bucket_size", "rank", "num_replica", "shuffle"):
            mine = getattr(self, {"max_seq_len": "max_len"}.get(k, k))
            if state.get(k, mine) != mine:
                raise ValueError(f"loader state is for {k}={state[k]}, this loader has {k}={mine}")
        version, internal, gauss = state["rng_state"]
        self._epoch_state = (version, tuple(internal), gauss)
        self._epoch, self._offset = state["epoch"], state["offset"]

    def close(self):
        self.db.close()

    def __del__(self):
        db = getattr(self, "db", None)
        if db is not None:
            db.close()


class DistributedBucketingDataLoader(BucketingDataLoader):
    """BucketingDataLoader for rank `rank` of `num_replica` (disjoint data per rank)."""

    def __init__(self, rank: int, num_replica: int, db_name, batch_size: int, max_seq_len: int,
                 bucket: int = 100, shuffle: bool = True, seed: int = SEED,
                 tokenizer_identity: str | None = None):
        super().__init__(db_name, batch_size, max_seq_len, bucket, shuffle, seed, tokenizer_identity,
                         rank=rank, num_replica=num_replica)


def _encoder(tokenizer):
    """(encode_batch, eos_id) for a tokenizers.Tokenizer or a transformers tokenizer."""
    if hasattr(tokenizer, "encode_batch_fast"):
        eos = tokenizer.token_to_id("<|endoftext|>")
        if eos is None:
            raise ValueError("tokenizer has no <|endoftext|> token")
        return (lambda texts: [e.ids for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]), eos
    return (lambda texts: [tokenizer.encode(t, add_special_tokens=False) for t in texts]), tokenizer.eos_token_id


class DynamicBatchingLoader:
    """Eval batches from a raw TSV: (input_ids, position_ids, token_type_ids, labels,
    context_len, response_len). A literal ' EOS ' in a source stays text, as in the original."""

    def __init__(self, corpus_file, tokenizer, normalize_data: bool, batch_size: int, max_seq_length: int):
        self.corpus = Path(corpus_file)
        if not self.corpus.is_file():
            raise FileNotFoundError(f"eval file not found: {corpus_file}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        self.encode_batch, self.eos = _encoder(tokenizer)
        self.norm, self.bs, self.max_len = normalize_data, batch_size, max_seq_length

    def __len__(self) -> int:
        with open(self.corpus, "rb") as f:  # the original counted with `wc -l`
            n = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
        return math.ceil(n / self.bs)

    def _clean(self, text: str) -> str:
        return " ".join(text.split()) if self.norm else text.strip()

    def __iter__(self):
        pairs = []
        for logical, physical, raw in iter_raw_lines(self.corpus):
            try:
                src, *tgts = decode_line(raw).split("\t")
            except ValueError as e:
                raise ValueError(f"{line_ref(self.corpus, logical, physical)}: {e}") from None
            pairs += [(self._clean(src), self._clean(t)) for t in tgts]
            if len(pairs) >= self.bs:
                batch = self._batch(pairs)
                pairs = []
                if batch is not None:
                    yield batch
        # the final partial batch is dropped, as the original did

    def _batch(self, pairs):
        ids = self.encode_batch([t for pair in pairs for t in pair])
        feats = [eval_feature(ids[2 * i], ids[2 * i + 1], self.max_len, self.eos) for i in range(len(pairs))]
        feats = [f for f in feats if f is not None]
        if not feats:  # every example too long (the original crashed in pad_sequence)
            return None
        return (_pad([f["input_ids"] for f in feats], 0), _pad([f["position_ids"] for f in feats], 0),
                _pad([f["token_type_ids"] for f in feats], 0), _pad([f["lm_labels"] for f in feats], -1),
                torch.tensor([f["context_len"] for f in feats], dtype=torch.long),
                torch.tensor([f["response_len"] for f in feats], dtype=torch.long))
