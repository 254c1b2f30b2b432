"""prepro: golden equality with the original, DB format, safety, atomicity, bad input."""
import dbm.dumb
import gzip
import io
import json
import math
import os
import pickle
import random
import shelve
import subprocess
import sys
import textwrap

import pytest

from lsp_data import db as dbmod
from lsp_data.db import ChunkWriter, DBError, db_name, dump, open_db, prepro_command, read_chunk
from lsp_data.prepro import PreproError, build_db, main, process_lines, summary
from lsp_data.tsv import iter_raw_lines
from lsp_model.tokenizer import EOS_ID, load_tokenizer, tokenizer_identity

RUNS = {  # golden tag -> build_db kwargs (the original's command lines)
    "128": {},
    "128.reverse": {"reverse": True},
    "64": {"max_seq_len": 64},
    "128.chunk100": {"chunk_size": 100},
}
ORIGINAL_META = ("n_example", "chunk_size", "max_seq_len", "reverse", "two_turn")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def golden_dbs(golden, tok, tmp_path_factory):
    """The four golden prepro runs, built once from a copy of golden prepro/train.tsv."""
    d = tmp_path_factory.mktemp("prepro")
    corpus = d / "train.tsv"
    corpus.write_bytes((golden / "prepro/train.tsv").read_bytes())
    out = {}
    for tag, kw in RUNS.items():
        target = d / f"{tag}.db" if tag == "128.chunk100" else None
        out[tag] = build_db(corpus, target, tokenizer=tok, progress=False, **kw)
    return out


def _dump(path) -> str:
    buf = io.StringIO()
    dump(path, buf)
    return buf.getvalue()


@pytest.mark.parametrize("tag", list(RUNS))
def test_golden_features_meta_chunks(golden_dbs, golden, tag):
    db, report = golden_dbs[tag]
    want = "128" if tag == "128.chunk100" else tag
    assert _dump(db) == (golden / f"prepro/features.{want}.jsonl").read_text()  # byte for byte, NaN too
    meta = json.loads((db / "meta.json").read_text())
    gold_meta = json.loads((golden / f"prepro/meta.{tag}.json").read_text())
    assert {k: meta[k] for k in ORIGINAL_META} == gold_meta
    assert list(meta)[:5] == list(ORIGINAL_META)
    gold_chunks = json.loads((golden / f"prepro/chunks.{tag}.json").read_text())
    shelf, _ = open_db(db)
    got = [{"key": k, "n_features": len(read_chunk(shelf, k))} for k in dbmod.chunk_keys(shelf)]
    shelf.close()
    assert got == gold_chunks["chunks_in_db_keys_order"]
    assert {k: v["n"] for k, v in meta["chunks"].items()} == {c["key"]: c["n_features"] for c in got}
    assert report["features"] == gold_meta["n_example"]
    assert db.name == (f"train.{tag.split('.')[0]}len.reverse.db" if "reverse" in tag else
                       f"{tag}.db" if "chunk100" in tag else f"train.{tag}len.db")


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("tag", ["128", "128.reverse", "64"])
def test_golden_lines_and_skipped(golden, golden_dbs, tok, tag):
    """Every logical line's outcome (status, weights, BPE lengths, conv_ids) as the original's."""
    kw = RUNS[tag]
    raw = list(iter_raw_lines(golden / "prepro/train.tsv"))
    results = process_lines([r for _, _, r in raw], tok, kw.get("max_seq_len", 128),
                            kw.get("reverse", False), False, EOS_ID)
    gold = [json.loads(line) for line in (golden / f"prepro/lines.{tag}.jsonl").open()]
    assert len(results) == len(gold) == 613
    n = 0
    for (logical, physical, _), (reason, msg, weights, lens, items), g in zip(raw, results, gold):
        assert (logical, physical) == (g["logical_line"], g["physical_line"])
        status = "ok" if reason is None else reason if reason in ("lt2turns", "no_features") else "exception"
        assert status == g["status"], g
        if status == "exception":
            assert "ValueError: " + msg == g["exception"]
            continue
        assert _same(weights, g["weights"]) and lens == g["turn_lens"], g
        if status != "lt2turns":
            assert list(range(n, n + len(items))) == g["conv_ids"] and len(items) == g["n_features"]
            n += len(items)
    # the report of the real build lists the same skipped lines, with both numberings
    report = golden_dbs[tag][1]
    skipped = json.loads((golden / f"prepro/skipped.{tag}.json").read_text())
    for status in ("exception", "lt2turns", "no_features"):
        reasons = [r for r in report["skipped"] if (r == status) or (status == "exception" and r not in
                                                                      ("lt2turns", "no_features"))]
        got = sorted((x["logical_line"], x["line"]) for r in reasons for x in report["skipped"][r])
        assert got == [(x["logical_line"], x["physical_line"]) for x in skipped[status]]
    assert report["lines"] == skipped["n_logical_lines"]


@pytest.mark.parametrize("tsv, jsonl", [("reddit/runs/train/train.tsv", "reddit/runs/train/prepro.features.128.jsonl"),
                                        ("train/train.tsv", "train/features.128.jsonl")])
def test_golden_other_corpora(golden, tok, tmp_path, tsv, jsonl):
    corpus = tmp_path / "train.tsv"
    corpus.write_bytes((golden / tsv).read_bytes())
    db, _ = build_db(corpus, tokenizer=tok, progress=False)
    assert _dump(db) == (golden / jsonl).read_text()


def test_worker_count_invariance(golden, tok, tmp_path):
    """2 spawned workers, small batches and chunks: the DB content is byte-identical to 1 worker."""
    corpus = tmp_path / "train.tsv"
    corpus.write_bytes((golden / "prepro/train.tsv").read_bytes())
    a, _ = build_db(corpus, tmp_path / "a.db", chunk_size=37, tokenizer=tok, workers=1, progress=False, batch_lines=50)
    b, _ = build_db(corpus, tmp_path / "b.db", chunk_size=37, tokenizer=tok, workers=2, progress=False, batch_lines=50)
    sa, _ = open_db(a)
    sb, _ = open_db(b)
    assert dbmod.chunk_keys(sa) == dbmod.chunk_keys(sb) and len(dbmod.chunk_keys(sa)) == 17
    for k in dbmod.chunk_keys(sa):
        assert gzip.decompress(sa[k]) == gzip.decompress(sb[k])
    assert json.loads((a / "meta.json").read_text()) == json.loads((b / "meta.json").read_text())


def test_chunking_rule_matches_original(tmp_path):
    """The original stored chunk_size features when a line *starts* with >= chunk_size pending;
    the last chunk takes the rest (may be empty or larger than chunk_size)."""
    rng = random.Random(0)
    for trial in range(60):
        cs = rng.randint(1, 5)
        per_line = [rng.choice([0, 0, 1, 1, 2, 3, 7]) for _ in range(rng.randint(1, 12))]
        want, pending, n = [], [], 0  # the original's list algorithm
        for k in per_line:
            if len(pending) >= cs:
                want.append(pending[:cs])
                pending = pending[cs:]
            pending += list(range(n, n + k))
            n += k
        want.append(pending)
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        w = ChunkWriter(folder, cs)
        for k in per_line:
            w.start_line()
            w.extend([(8, '"input_len": 8}')] * k)
        w.close()
        (folder / "meta.json").write_text("{}")
        shelf, _ = open_db(folder)
        got = [[f["conv_id"] for f in read_chunk(shelf, key)] for key in dbmod.chunk_keys(shelf)]
        shelf.close()
        assert got == want, (cs, per_line)


@pytest.mark.parametrize("use_orjson", [True, False])
def test_feature_tails_are_json_dumps(monkeypatch, use_orjson):
    """The JSON written from per-turn id fragments is json.dumps of make_features' dicts, byte for
    byte: empty turns, zero/-0.0/NaN/inf/exponent weights, over-long turns, window overflow."""
    from lsp_data import features as F
    if not use_orjson:
        monkeypatch.setattr(F, "orjson", None)
    rng = random.Random(1)
    ws_pool = [0.0, -0.0, 1.0, 0.5, 2.0, float("nan"), float("inf"), -float("inf"), 1e16, 1e-7, -3.25]
    for _ in range(3000):
        k = rng.randint(1, 7)
        inputs = [[rng.randint(0, EOS_ID) for _ in range(rng.choice([0, 0, 1, 2, 5, 11, 30, 70]))]
                  for _ in range(k)]
        ws = [rng.choice(ws_pool) for _ in range(k)]
        max_len = rng.choice([8, 16, 32, 64, 128])
        want = [(f["input_len"], json.dumps({"conv_id": 3, **f}))
                for f in F.make_features(ws, inputs, max_len, EOS_ID)]
        got = F.feature_tails(F.id_fragments(inputs), [len(x) for x in inputs], ws, max_len, EOS_ID)
        assert [(n, F.feature_json(3, t)) for n, t in got] == want, (inputs, ws, max_len)
        assert [F.feature_json(3, F.feature_tail(f)) for f in F.make_features(ws, inputs, max_len, EOS_ID)] == \
            [t for _, t in want]


def test_add_lines_is_start_line_and_extend(tmp_path):
    """ChunkWriter.add_lines (a batch at once) stores the same chunks as per-line calls."""
    rng = random.Random(2)
    for trial in range(40):
        cs = rng.randint(1, 30)
        batches = [[[(8, '"input_len": 8}')] * rng.choice([0, 1, 2, 5]) for _ in range(rng.randint(0, 9))]
                   for _ in range(rng.randint(1, 6))]
        got = []
        for mode in ("lines", "batches"):
            folder = tmp_path / f"{mode}{trial}"
            folder.mkdir()
            w = ChunkWriter(folder, cs)
            for batch in batches:
                if mode == "batches":
                    w.add_lines(batch)
                    continue
                for items in batch:
                    w.start_line()
                    w.extend(items)
            got.append(w.close())
            (folder / "meta.json").write_text("{}")
            shelf, _ = open_db(folder)
            got.append([read_chunk(shelf, k) for k in dbmod.chunk_keys(shelf)])
            shelf.close()
        assert got[0:2] == got[2:4], (cs, batches)


def test_original_format_db_is_read(golden, tmp_path):
    """A DB as the original wrote it (shelve over dbm.dumb, default pickle protocol, meta.json with
    only its keys, a tokenizer.pt that must never be loaded) is dumped and loaded."""
    feats = [json.loads(line) for line in (golden / "prepro/features.128.jsonl").open()]
    folder = tmp_path / "train.128len.db"
    folder.mkdir()
    with shelve.Shelf(dbm.dumb.open(str(folder / "db"), "n")) as db:
        db["chunk_0"] = gzip.compress(json.dumps(feats[:300]).encode("utf-8"))
        db["chunk_1"] = gzip.compress(json.dumps(feats[300:]).encode("utf-8"))
    (folder / "meta.json").write_text(json.dumps({"n_example": len(feats), "chunk_size": 300,
                                                  "max_seq_len": 128, "reverse": False, "two_turn": False}))
    (folder / "tokenizer.pt").write_bytes(b"not a pickle we would ever open")
    assert sorted(p.name for p in folder.iterdir()) == ["db.bak", "db.dat", "db.dir", "meta.json", "tokenizer.pt"]
    assert _dump(folder) == (golden / "prepro/features.128.jsonl").read_text()
    assert _dump(folder / "db") == _dump(folder)  # the original's `<folder>/db` form


def test_protocol2_values_are_read(tmp_path):
    """Pythons of the original's era pickled bytes via _codecs.encode (protocol 2)."""
    folder = tmp_path / "x.db"
    folder.mkdir()
    raw = dbm.dumb.open(str(folder / "db"), "n")
    raw[b"chunk_0"] = pickle.dumps(gzip.compress(b'[{"conv_id": 0, "input_len": 8}]'), protocol=2)
    raw.close()
    (folder / "meta.json").write_text("{}")
    shelf, _ = open_db(folder)
    assert read_chunk(shelf, "chunk_0") == [{"conv_id": 0, "input_len": 8}]


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_malicious_pickle_refused(tmp_path):
    folder = tmp_path / "evil.128len.db"
    folder.mkdir()
    pwned = tmp_path / "pwned"
    raw = dbm.dumb.open(str(folder / "db"), "n")
    raw[b"chunk_0"] = pickle.dumps(_Evil(pwned))
    raw[b"chunk_1"] = pickle.dumps({"not": "bytes"})
    raw.close()
    (folder / "meta.json").write_text(json.dumps({"max_seq_len": 128}))
    shelf, _ = open_db(folder)
    with pytest.raises(DBError, match=r"chunk_0.*refused.*posix\.system|chunk_0.*refused.*system"):
        shelf["chunk_0"]
    with pytest.raises(DBError, match="chunk_1.*refused"):
        shelf["chunk_1"]
    with pytest.raises(DBError):
        _dump(folder)
    assert not pwned.exists()


def test_db_name_and_prepro_command():
    assert str(db_name("data/train.tsv", 128)) == "data/train.128len.db"
    assert str(db_name("data/train.tsv", 64, reverse=True, two_turn=True)) == "data/train.64len.reverse.2turn.db"
    assert prepro_command("data/train.64len.reverse.db") == "python prepro.py --corpus data/train.tsv --max_seq_len 64 --reverse"


BAD = (b"1.0 hello there\t1.0 general kenobi\n"      # 1 ok
       b"\n"                                        # 2 blank_line
       b"1.0 no tab at all\n"                       # 3 missing_tab
       b"1.0 a\t1.0 b\t1.0 c\n"                     # 4 extra_tab
       b"1.0 x EOS  EOS 1.0 y\t1.0 z\n"             # 5 empty_turn
       b"1.0 caf\xe9 au lait\t1.0 oui\n"            # 6 undecodable (latin-1 byte)
       b"1.0 context only\t\n"                      # 7 empty_field (the target)
       b"1.0 hi\t0.0 zero weight target\n"          # 8 lt2turns
       b"0.0 a\t1.0 b\r1.0 c\t1.0 d\n")             # 9: two lines (lone CR), both ok


def test_bad_lines_counted_and_reported(tok, tmp_path):
    corpus = tmp_path / "bad.tsv"
    corpus.write_bytes(BAD)
    db, report = build_db(corpus, tokenizer=tok, progress=False)
    counts = {k: v for k, v in report["counts"].items() if v}
    assert counts == {"blank_line": 1, "missing_tab": 1, "extra_tab": 1, "empty_turn": 1,
                      "undecodable": 1, "empty_field": 1, "lt2turns": 1}
    where = {r: [x["line"] for x in v] for r, v in report["skipped"].items() if v}
    assert where == {"blank_line": [2], "missing_tab": [3], "extra_tab": [4], "empty_turn": [5],
                     "undecodable": [6], "empty_field": [7], "lt2turns": [8]}
    assert report["lines"] == 10 and report["features"] == 3
    text = summary(report)
    assert "undecodable: 1 (lines 6)" in text and "3 features" in text
    assert json.loads((db / "report.json").read_text())["counts"] == report["counts"]


def test_strict_names_file_and_line(tok, tmp_path):
    corpus = tmp_path / "bad.tsv"
    corpus.write_bytes(BAD)
    with pytest.raises(PreproError, match=r"bad\.tsv:2: malformed line \(blank_line\)"):
        build_db(corpus, tokenizer=tok, strict=True, progress=False)
    assert not db_name(corpus, 128).exists() and list(tmp_path.iterdir()) == [corpus]
    corpus.write_bytes(BAD[:BAD.index(b"\n") + 1] + BAD[BAD.index(b"1.0 caf"):])
    with pytest.raises(PreproError, match=r"bad\.tsv:2: malformed line \(undecodable\)"):
        build_db(corpus, tokenizer=tok, strict=True, progress=False)


def test_missing_empty_and_featureless_corpus(tok, tmp_path):
    with pytest.raises(PreproError, match="corpus not found: .*nope.tsv"):
        build_db(tmp_path / "nope.tsv", tokenizer=tok)
    (tmp_path / "empty.tsv").write_bytes(b"")
    with pytest.raises(PreproError, match="corpus is empty"):
        build_db(tmp_path / "empty.tsv", tokenizer=tok)
    (tmp_path / "dummy.tsv").write_text("0.0 hi\t1.0 there\n0.0 a\t1.0 b\n")  # --reverse: all None
    with pytest.raises(PreproError, match="no features from 2 lines"):
        build_db(tmp_path / "dummy.tsv", tokenizer=tok, reverse=True, progress=False)
    assert not (tmp_path / "dummy.128len.reverse.db").exists()


def test_existing_db_needs_overwrite(tok, tmp_path):
    corpus = tmp_path / "c.tsv"
    corpus.write_text("1.0 hi there\t1.0 hello you\n")
    db, _ = build_db(corpus, tokenizer=tok, progress=False)
    with pytest.raises(PreproError, match="already exists.*--overwrite"):
        build_db(corpus, tokenizer=tok, progress=False)
    corpus.write_text("1.0 hi there\t1.0 hello you\n1.0 a\t1.0 b\n")
    db2, report = build_db(corpus, tokenizer=tok, progress=False, overwrite=True)
    assert db2 == db and report["features"] == 2
    meta = json.loads((db / "meta.json").read_text())
    assert meta["n_example"] == 2 and meta["tokenizer_identity"] == tokenizer_identity(tok)
    assert meta["format_version"] == dbmod.FORMAT_VERSION


def test_interrupted_build_leaves_nothing_complete(tok, tmp_path, monkeypatch):
    corpus = tmp_path / "c.tsv"
    corpus.write_text("".join(f"1.0 line {i}\t1.0 reply {i}\n" for i in range(50)))
    calls = []
    real = ChunkWriter._store

    def crash(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(self)
    monkeypatch.setattr(ChunkWriter, "_store", crash)
    with pytest.raises(KeyboardInterrupt):
        build_db(corpus, tokenizer=tok, chunk_size=10, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tsv"]


def test_killed_build_leaves_nothing_complete(repo_dir, tmp_path):
    """SIGKILL mid-build (no cleanup at all): only a hidden temp folder without meta.json remains."""
    corpus = tmp_path / "c.tsv"
    corpus.write_text("".join(f"1.0 line {i}\t1.0 reply {i}\n" for i in range(50)))
    script = textwrap.dedent(f"""
        import os, signal, sys, types
        sys.path.insert(0, {str(repo_dir)!r})
        # import lsp_model's tokenizer without its package __init__ (torch): a faster start
        pkg = types.ModuleType("lsp_model")
        pkg.__path__ = [os.path.join({str(repo_dir)!r}, "lsp_model")]
        sys.modules["lsp_model"] = pkg
        from lsp_data import db, prepro
        real = db.ChunkWriter._store
        def store(self):
            real(self)
            os.kill(os.getpid(), signal.SIGKILL)
        db.ChunkWriter._store = store
        prepro.main(["--corpus", {str(corpus)!r}, "--chunk_size", "10", "--workers", "1", "--quiet"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    final = tmp_path / "c.128len.db"
    left = [p for p in tmp_path.iterdir() if p != corpus]
    assert not final.exists()
    assert len(left) == 1 and left[0].name.startswith(".c.128len.db.tmp-")
    assert (left[0] / "db.dat").exists() and not (left[0] / "meta.json").exists()
    with pytest.raises(FileNotFoundError, match=r"DB not found: .*c\.128len\.db \(build it with: "
                                                r"python prepro\.py --corpus .*c\.tsv --max_seq_len 128\)"):
        open_db(final)


def test_cli_dump_and_errors(golden, golden_dbs, tmp_path, capsys):
    db, _ = golden_dbs["128.reverse"]
    assert main(["--dump", str(db)]) == 0
    assert capsys.readouterr().out == (golden / "prepro/features.128.reverse.jsonl").read_text()
    assert main(["--corpus", str(tmp_path / "missing.tsv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corpus not found" in err[0]
    assert main(["--dump", str(tmp_path / "no.128len.db")]) == 2
    assert "DB not found" in capsys.readouterr().err


def test_tokenizer_directory(tok, tmp_path):
    """--tokenizer DIR: a saved tokenizer gives the same DB and identity; one without
    <|endoftext|> is a clear error."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from lsp_model.tokenizer import save_tokenizer
    save_tokenizer(tok, tmp_path / "tok")
    corpus = tmp_path / "c.tsv"
    corpus.write_text("1.0 hi there EOS 0.0 how are you\t1.0 fine thanks\n")
    a, _ = build_db(corpus, tmp_path / "a.db", tokenizer=tok, progress=False)
    b, _ = build_db(corpus, tmp_path / "b.db", tokenizer=tmp_path / "tok", progress=False)
    assert _dump(a) == _dump(b)
    assert json.loads((b / "meta.json").read_text())["tokenizer_identity"] == tokenizer_identity(tok)
    bare = Tokenizer(models.WordLevel({"hi": 0, "[UNK]": 1}, unk_token="[UNK]"))
    bare.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(PreproError, match="no <|endoftext|> token"):
        build_db(corpus, tmp_path / "c.db", tokenizer=bare, progress=False)
