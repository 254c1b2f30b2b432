"""A damaged DB is refused with one line naming the file and the fix, and check_db is the one
validity rule (trainer, loaders, demo)."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import pytest

from lsp_data.db import DBError, check_db, dump, open_db
from lsp_data.prepro import build_db


@pytest.fixture(scope="module")
def good_db(tmp_path_factory):
    d = tmp_path_factory.mktemp("trustdb")
    corpus = d / "c.tsv"
    corpus.write_text("".join(f"1.0 line number {i} EOS 1.0 and more {i}\t1.0 reply {i}\n" for i in range(6)))
    db, _ = build_db(corpus, chunk_size=2, progress=False)
    return db


@pytest.fixture(scope="module")
def one_chunk_db(tmp_path_factory):
    """One long line cut into 6 overflow windows: 6 features, chunk size 4, ONE chunk."""
    d = tmp_path_factory.mktemp("trustdb1")
    corpus = d / "c.tsv"
    corpus.write_text(" EOS ".join(f"1.0 turn number {i} here" for i in range(16)) + "\t1.0 the reply\n")
    db, _ = build_db(corpus, max_seq_len=16, chunk_size=4, progress=False)
    return db


def copy_db(good_db, tmp_path):
    db = tmp_path / good_db.name
    shutil.copytree(good_db, db)
    return db


def test_check_db_follows_the_chunking_rule(one_chunk_db, good_db):
    """6 features at chunk size 4 make one chunk, not ceil(6 / 4): a correct DB, accepted."""
    meta = check_db(one_chunk_db, max_seq_len=16)
    assert (meta["n_example"], meta["chunk_size"], len(meta["chunks"])) == (6, 4, 1)
    meta = check_db(good_db, max_seq_len=128)
    assert (meta["n_example"], meta["chunk_size"], len(meta["chunks"])) == (6, 2, 3)


def test_check_db_refuses_other_max_seq_len_and_tokenizer(good_db):
    with pytest.raises(DBError, match="built with --max_seq_len 128.*max_seq_len 64.*--max_seq_len 64"):
        check_db(good_db, max_seq_len=64)
    with pytest.raises(DBError, match="another tokenizer"):
        check_db(good_db, tokenizer_identity="0" * 64)


def test_empty_index_is_an_error_not_an_empty_dump(good_db, tmp_path):
    db = copy_db(good_db, tmp_path)
    (db / "db.dir").write_bytes(b"")
    with pytest.raises(DBError, match=r"db.dir\) disagrees with meta.json: the index holds 0 chunk.*--overwrite"):
        dump(db, io.StringIO())
    r = subprocess.run([sys.executable, "prepro.py", "--dump", str(db)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and "disagrees" in r.stderr


@pytest.mark.parametrize("damage, pattern", [
    ("truncated_dir", r"db\.dir: truncated or damaged index \(SyntaxError\); rebuild it with: .*--overwrite"),
    ("garbage_dir", r"db\.dir: not a dbm.dumb index .*rebuild it with: .*--overwrite"),
    ("truncated_dat", r"db\.dat: truncated .*--overwrite"),
    ("chunk_count", r"disagrees with meta.json: the index holds 3 chunk\(s\), meta.json lists 2"),
    ("n_example", r"chunks hold 6 features, n_example is 915"),
])
def test_damaged_db_one_line(good_db, tmp_path, damage, pattern):
    db = copy_db(good_db, tmp_path)
    index = (db / "db.dir").read_bytes()
    meta = json.loads((db / "meta.json").read_text())
    if damage == "truncated_dir":
        (db / "db.dir").write_bytes(index[:len(index) // 2 + 3])
    elif damage == "garbage_dir":
        (db / "db.dir").write_bytes(b"\x00\x17garbage" * 10)
    elif damage == "truncated_dat":
        dat = (db / "db.dat").read_bytes()
        (db / "db.dat").write_bytes(dat[:len(dat) // 2])
    elif damage == "chunk_count":
        del meta["chunks"]["chunk_2"]
        (db / "meta.json").write_text(json.dumps(meta))
    else:
        meta["n_example"] = 915
        (db / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DBError) as e:
        open_db(db)
    assert "\n" not in str(e.value)
    import re
    assert re.search(pattern, str(e.value)), str(e.value)


def test_original_db_without_chunk_stats(good_db, tmp_path):
    """An original prepro DB has no per-chunk stats: the cheap rule is that every chunk but the
    last holds chunk_size features."""
    db = copy_db(good_db, tmp_path)
    meta = json.loads((db / "meta.json").read_text())
    original = {k: meta[k] for k in ("n_example", "chunk_size", "max_seq_len", "reverse", "two_turn")}
    (db / "meta.json").write_text(json.dumps(original))
    assert check_db(db, max_seq_len=128)["n_example"] == 6
    (db / "meta.json").write_text(json.dumps(original | {"n_example": 3}))
    with pytest.raises(DBError, match="3 chunks of 2 cannot hold only 3 features"):
        check_db(db)


def test_check_db_reads_the_settings_first(tmp_path):
    """A folder with only a meta.json of another max_seq_len: the message is about that, naming
    meta.json (what the trainer's --max_seq_length check needs), not about missing dbm files."""
    db = tmp_path / "train.64len.db"
    db.mkdir()
    (db / "meta.json").write_text(json.dumps({"max_seq_len": 128}))
    with pytest.raises(DBError, match=r"train\.64len\.db/meta\.json: DB built with --max_seq_len 128.*asked for "
                                      r"max_seq_len 64.*--max_seq_len 64"):
        check_db(db, max_seq_len=64)
    with pytest.raises(DBError, match="no shelve DB in it"):
        check_db(db, max_seq_len=128)
    with pytest.raises(FileNotFoundError, match="DB not found"):
        check_db(tmp_path / "nope.db")
