"""The feature DB: the original's shelve layout, made portable, safe and atomic.

Layout of `<corpus>.<max_seq_len>len[.reverse][.2turn].db/`:
  db.dat, db.dir, db.bak  a shelve over dbm.dumb (chosen explicitly: pure Python, in every build,
                          and what the original wrote on Pythons without gdbm, so either side
                          reads the other's DBs). Keys chunk_0, chunk_1, ...; each value is
                          gzip(JSON list of feature dicts), pickled as bytes by shelve.
  meta.json               the original's keys (n_example, chunk_size, max_seq_len, reverse,
                          two_turn) plus format_version, tokenizer identity and per-chunk stats.
  report.json             what prepro skipped, by reason, with line numbers.

Reading never runs code: values go through an unpickler that builds only bytes (refusing any
other global), and an original DB's tokenizer.pt is never loaded.
"""
from __future__ import annotations

import collections
import dbm
import dbm.dumb
import gzip
import io
import json
import os
import pickle
import re
import shelve
import warnings
import zlib
from pathlib import Path

from .features import feature_json

try:
    import orjson
except ImportError:  # optional: 2-3x faster chunk parsing
    orjson = None

FORMAT_VERSION = 1
GZIP_LEVEL = 3  # the original used 9: 13x slower to write for a 25% smaller chunk; reads the same
CHUNK_RE = re.compile(r"chunk_(\d+)$")


class DBError(ValueError):
    """A DB that cannot be used; the message names the path and what is wrong."""


def db_name(corpus: str | os.PathLike, max_seq_len: int, reverse: bool = False,
            two_turn: bool = False) -> Path:
    """The original's output folder name: `<corpus without .tsv>.<N>len[.reverse][.2turn].db`."""
    corpus = str(corpus)
    stem = corpus[:-4] if corpus.endswith(".tsv") else corpus
    attrs = [a for a, on in (("reverse", reverse), ("2turn", two_turn)) if on]
    return Path(".".join([stem, f"{max_seq_len}len", *attrs, "db"]))


def prepro_command(db: str | os.PathLike) -> str:
    """The prepro command that builds `db` (for error messages)."""
    m = re.match(r"(.*)\.(\d+)len((?:\.reverse)?)((?:\.2turn)?)\.db/?$", str(db))
    if not m:
        return "python prepro.py --corpus CORPUS.tsv --max_seq_len N"
    flags = (" --reverse" if m.group(3) else "") + (" --two_turn" if m.group(4) else "")
    return f"python prepro.py --corpus {m.group(1)}.tsv --max_seq_len {m.group(2)}{flags}"


# ----------------------------------------------------------------------------------- writing

class ChunkWriter:
    """Streams features into gzip-JSON chunks with the original's chunking rule.

    The original checked at the start of every line (even one that then failed) whether the
    pending list held >= chunk_size features, stored the first chunk_size and kept the rest;
    the last chunk holds whatever remains (it may be empty, or longer than chunk_size). The
    JSON bytes are exactly `json.dumps(list_of_features)`; they are compressed as they come.
    """

    def __init__(self, folder: Path, chunk_size: int):
        self.shelf = shelve.Shelf(dbm.dumb.open(str(folder / "db"), "n"), protocol=4)
        self.chunk_size = chunk_size
        self.chunks: dict[str, dict] = {}
        self.n_example = 0
        self._new_chunk()
        self._overflow: list[tuple[int, str]] = []

    def _new_chunk(self):
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: gzip container
        self._parts: list[bytes] = [self._z.compress(b"[")]
        self._n = 0
        self._lens: collections.Counter[int] = collections.Counter()

    def _add(self, items: list[tuple[int, str]]):
        text = ", ".join([t for _, t in items])
        self._parts.append(self._z.compress((text if self._n == 0 else ", " + text).encode("utf-8")))
        self._n += len(items)
        self._lens.update([length for length, _ in items])

    def _store(self):
        self._parts.append(self._z.compress(b"]"))
        self._parts.append(self._z.flush())
        key = f"chunk_{len(self.chunks)}"
        self.shelf[key] = b"".join(self._parts)
        self.chunks[key] = {"n": self._n, "input_len_counts": {str(k): v for k, v in sorted(self._lens.items())}}
        self._new_chunk()

    def start_line(self):
        if self._n + len(self._overflow) >= self.chunk_size:
            self._store()
            pending, self._overflow = self._overflow, []
            self._place(pending)

    def extend(self, items: list[tuple[int, str]]):
        """Append the (input_len, feature JSON tail) pairs of one line, numbering conv_ids."""
        n = self.n_example
        self._place([(length, feature_json(n + i, tail)) for i, (length, tail) in enumerate(items)])
        self.n_example += len(items)

    def add_lines(self, lines: list[list[tuple[int, str]]]):
        """start_line() then extend(items) for each line's items; in one go when no chunk fills."""
        if self._n + len(self._overflow) + sum(map(len, lines)) < self.chunk_size:
            self.extend([item for items in lines for item in items])
            return
        for items in lines:
            self.start_line()
            self.extend(items)

    def _place(self, items):
        room = self.chunk_size - self._n
        if items[:room]:
            self._add(items[:room])
        self._overflow += items[room:]

    def close(self) -> dict[str, dict]:
        pending, self._overflow = self._overflow, []
        if pending:
            self._add(pending)
        self._store()
        self.shelf.close()
        return self.chunks


def write_meta(folder: Path, meta: dict) -> None:
    with open(folder / "meta.json", "w") as f:
        json.dump(meta, f, indent=4)


# ----------------------------------------------------------------------------------- reading

def _only_latin1_encode(text, encoding="latin1"):
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode allowed only as bytes' latin1 pickling")
    return text.encode("latin1")


def _empty_bytes(*args):
    if args:
        raise pickle.UnpicklingError("bytes() allowed only without arguments")
    return b""


class _BytesUnpickler(pickle.Unpickler):
    """Builds str/bytes only. Protocols <= 2 pickle bytes as _codecs.encode(str, 'latin1') or
    bytes(); those two are allowed in exactly that form, every other global is refused."""

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return _only_latin1_encode
        if (module, name) in (("builtins", "bytes"), ("__builtin__", "bytes")):
            return _empty_bytes
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def safe_loads(data: bytes):
    value = _BytesUnpickler(io.BytesIO(data)).load()
    if not isinstance(value, (bytes, str)):
        raise pickle.UnpicklingError(f"holds a {type(value).__name__}, not bytes")
    return value


class SafeShelf(shelve.Shelf):
    """A read-only shelve whose values are unpickled by `_BytesUnpickler`."""

    def __init__(self, dict, path: str):
        super().__init__(dict)
        self.path = path

    def __getitem__(self, key):
        try:
            return safe_loads(self.dict[key.encode(self.keyencoding)])
        except KeyError:
            raise
        except Exception as e:
            raise DBError(f"{self.path}: value of {key!r} is not a DialoGPT DB value, refused "
                          f"({type(e).__name__}: {e})") from None

    def __setitem__(self, key, value):
        raise DBError(f"{self.path}: opened read-only")


def _rebuild(folder: Path) -> str:
    return f"rebuild it with: {prepro_command(folder)} --overwrite"


def _open_dbm(base: Path):
    folder = base.parent
    kind = dbm.whichdb(str(base))
    index = base.with_name("db.dir")
    if not kind and index.is_file() and base.with_name("db.dat").is_file():
        raise DBError(f"{index}: not a dbm.dumb index (a damaged file?); {_rebuild(folder)}")
    if kind is None:
        raise DBError(f"{folder}: no shelve DB in it (expected db.dat/db.dir); {_rebuild(folder)}")
    if kind == "":
        raise DBError(f"{folder}: db files of an unknown dbm format")
    if kind == "dbm.dumb":
        try:
            db = dbm.dumb.open(str(base), "r")
        except OSError:
            raise
        except Exception as e:  # dbm.dumb parses each index line with ast.literal_eval
            raise DBError(f"{index}: truncated or damaged index ({type(e).__name__}); {_rebuild(folder)}") from None
        _check_dumb_index(db, base.with_name("db.dat"))
        return db
    try:  # a DB the original wrote with gdbm/ndbm: readable only where this Python has them
        return dbm.open(str(base), "r")
    except Exception as e:
        raise DBError(f"{base.parent}: shelve DB written with {kind}, which this Python cannot "
                      f"read ({e}); rebuild it with prepro.py") from None


def _check_dumb_index(db, dat: Path) -> None:
    """Every value the index points at lies inside db.dat (a truncated db.dat fails here, not
    mid-training). Reads only the in-memory index."""
    size = dat.stat().st_size
    index = getattr(db, "_index", None) or {}
    bad = [k.decode(errors="replace") for k, (pos, n) in index.items() if pos + n > size]
    if bad:
        db.close()
        raise DBError(f"{dat}: truncated ({size} bytes; {bad[0]} lies beyond the end); {_rebuild(dat.parent)}")


def _check_index_matches_meta(shelf, meta: dict, folder: Path) -> None:
    """The chunks in the index are the ones meta.json describes (cheap: keys and meta only)."""
    keys = chunk_keys(shelf)
    n, size, stats = meta.get("n_example"), meta.get("chunk_size"), meta.get("chunks")
    why = None
    if stats is not None:  # ours: meta.json lists every chunk and its feature count
        if set(keys) != set(stats):
            why = f"the index holds {len(keys)} chunk(s), meta.json lists {len(stats)}"
        elif n is not None and sum(v.get("n", 0) for v in stats.values()) != n:
            why = f"meta.json's chunks hold {sum(v.get('n', 0) for v in stats.values())} features, n_example is {n}"
    elif n:  # the original's: every chunk but the last holds chunk_size features
        if not keys:
            why = f"the index holds no chunk, meta.json says {n} features"
        elif size and (len(keys) - 1) * size > n:
            why = f"{len(keys)} chunks of {size} cannot hold only {n} features"
    if why:
        raise DBError(f"{folder}: index (db.dir) disagrees with meta.json: {why}; {_rebuild(folder)}")


def read_meta(path: str | os.PathLike) -> tuple[Path, dict]:
    """(DB folder, its meta.json) of a DB folder (or the original's `<folder>/db` form)."""
    folder = Path(path)
    if folder.name == "db" and not folder.is_dir():
        folder = folder.parent  # the original's `<folder>/db` form
    if not folder.is_dir():
        raise FileNotFoundError(f"DB not found: {folder} (build it with: {prepro_command(folder)})")
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise DBError(f"{folder}: no meta.json, so the DB is incomplete (interrupted build?); {_rebuild(folder)}")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:
        raise DBError(f"{meta_path}: not valid JSON ({e}); {_rebuild(folder)}") from None
    if not isinstance(meta, dict):
        raise DBError(f"{meta_path}: not a DB meta.json (a JSON object); {_rebuild(folder)}")
    version = meta.get("format_version", 0)  # 0: written by the original prepro.py
    if version > FORMAT_VERSION:
        raise DBError(f"{folder}: format_version {version} is newer than this code reads "
                      f"({FORMAT_VERSION})")
    return folder, meta


def open_db(path: str | os.PathLike) -> tuple[SafeShelf, dict]:
    """Open a DB folder (ours or the original's) read-only: (shelf, meta).

    Checks, without reading a chunk: meta.json is there and readable, the format version, the
    dbm index parses and points inside db.dat, and its chunks are the ones meta.json describes.
    """
    folder, meta = read_meta(path)
    shelf = SafeShelf(_open_dbm(folder / "db"), str(folder))
    try:
        _check_index_matches_meta(shelf, meta, folder)
    except DBError:
        shelf.close()
        raise
    return shelf, meta


def check_meta(path: str | os.PathLike, meta: dict, max_seq_len: int | None = None,
               tokenizer_identity: str | None = None) -> None:
    """The DB was built for this max_seq_len and tokenizer (None: not checked). A DB of the
    original prepro.py has no tokenizer identity: that is a warning, it cannot be checked."""
    where = Path(path) / "meta.json"
    built = meta.get("max_seq_len")
    if max_seq_len is not None and built is not None and built != max_seq_len:
        other = prepro_command(path).replace(f"--max_seq_len {built}", f"--max_seq_len {max_seq_len}")
        raise DBError(f"{where}: DB built with --max_seq_len {built}, but it is asked for max_seq_len "
                      f"{max_seq_len}; use {built}, or build a DB with: {other}")
    have = meta.get("tokenizer_identity")
    if tokenizer_identity is None:
        return
    if have is None:
        warnings.warn(f"{where}: no tokenizer identity (a DB of the original "
                      "prepro.py?); cannot check it matches the model's tokenizer")
    elif have != tokenizer_identity:
        raise DBError(f"{where}: DB built with another tokenizer (identity {have[:12]}..., expected "
                      f"{tokenizer_identity[:12]}...); rebuild it with prepro.py --tokenizer ... --overwrite")


def check_db(path: str | os.PathLike, max_seq_len: int | None = None,
             tokenizer_identity: str | None = None) -> dict:
    """The one DB validity rule (trainer, loaders, demo): the build settings (check_meta), then
    open_db's checks. Returns meta.json's dict; raises DBError (FileNotFoundError: no folder)."""
    folder, meta = read_meta(path)
    check_meta(folder, meta, max_seq_len, tokenizer_identity)
    shelf, meta = open_db(folder)
    shelf.close()
    return meta


def chunk_keys(shelf) -> list[str]:
    """chunk_N keys in N order (= the original's insertion order)."""
    keys = []
    for k in shelf.keys():
        m = CHUNK_RE.match(k)
        if m:
            keys.append((int(m.group(1)), k))
    return [k for _, k in sorted(keys)]


def loads_json(data: bytes):
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # NaN/Infinity weights: only Python's json reads them
    return json.loads(data)


def read_chunk_json(shelf: SafeShelf, key: str) -> bytes:
    """The decompressed JSON bytes of a chunk."""
    value = shelf[key]
    try:
        return gzip.decompress(value)
    except Exception as e:
        raise DBError(f"{shelf.path}: {key} is not gzip-compressed ({type(e).__name__}: {e})") from None


def read_chunk(shelf: SafeShelf, key: str) -> list[dict]:
    raw = read_chunk_json(shelf, key)
    try:
        features = loads_json(raw)
    except Exception as e:
        raise DBError(f"{shelf.path}: {key} is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(features, list):
        raise DBError(f"{shelf.path}: {key} holds a {type(features).__name__}, expected a list of features")
    return features


def chunk_sizes(shelf: SafeShelf, meta: dict) -> dict[str, dict[int, int]]:
    """{key: {input_len: count}}: from meta.json, or by reading every chunk (original DBs)."""
    stats = meta.get("chunks")
    if stats:
        return {k: {int(l): c for l, c in v["input_len_counts"].items()} for k, v in stats.items()}
    out = {}
    for key in chunk_keys(shelf):
        counts: dict[int, int] = {}
        for f in read_chunk(shelf, key):
            counts[f["input_len"]] = counts.get(f["input_len"], 0) + 1
        out[key] = counts
    return out


def dump(path: str | os.PathLike, out) -> int:
    """Write every feature as a JSON line, in DB order (the golden files' format)."""
    shelf, _ = open_db(path)
    n = 0
    try:
        for key in chunk_keys(shelf):
            for f in json.loads(read_chunk_json(shelf, key)):  # Python json: round-trips NaN/Infinity byte for byte
                out.write(json.dumps(f) + "\n")
                n += 1
    finally:
        shelf.close()
    return n
