"""lsp_data.chitchat: chitchat-dataset -> DialoGPT TSV with turn weights and a held-out split."""
import json

import pytest

from lsp_data import chitchat as cc
from lsp_model.tokenizer import encode, load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def msg(text, who):
    return {"text": text, "timestamp": "2018-05-02T19:38:15Z", "sender": who}


def write_dataset(path, n=30, turns=6):
    """n conversations with unique turn texts; consecutive messages of one sender form a turn."""
    data = {}
    for c in range(n):
        runs = []
        for t in range(turns):
            who = "a" if t % 2 == 0 else "b"
            runs.append([msg(f"conv {c} turn {t} hello", who), msg(f"and more {c}.{t}", who)])
        data[f"id{c:03d}"] = {"messages": runs, "ratings": {}, "start": "", "prompt": ""}
    data["lonely"] = {"messages": [[msg("anyone there?", "a")]]}  # no reply: unusable
    path.write_text(json.dumps(data))
    return path


def parse_line(line):
    src, tgt = line.rstrip("\n").split("\t")
    turns = src.split(" EOS ") + [tgt]
    return [t.split(" ", 1) for t in turns]


def test_clean_turn():
    assert cc.clean_turn("  hi\tthere \n you ") == "hi there you"
    assert cc.clean_turn("say EOS now, EOSy") == "say eos now, EOSy"  # prepro splits on ' EOS '


def test_segments_fit_overlap_and_skip():
    assert cc.segments([3, 3, 3], 20) == ([(0, 3)], 0, 0)
    # budget 10: [4,4] fit (10), adding 4 overflows -> next segment restarts from turn 1
    assert cc.segments([4, 4, 4, 4], 10) == ([(0, 2), (1, 3), (2, 4)], 0, 0)
    # a turn longer than the budget is skipped and breaks the conversation
    assert cc.segments([2, 2, 50, 2, 2], 10) == ([(0, 2), (3, 5)], 0, 1)
    # turn 2 cannot follow turn 1 within the budget: it becomes context, untrained
    assert cc.segments([1, 2, 7, 1], 10) == ([(0, 2), (2, 4)], 1, 0)


def test_format_line_weights():
    assert cc.format_line(["a b", "c", "d e"]) == "0.0 a b EOS 1.0 c\t1.0 d e"


def test_convert_synthetic(tmp_path, tok):
    src = write_dataset(tmp_path / "dataset.json")
    stats = cc.convert(tmp_path / "out", n_test=5, seed=3, max_seq_len=24, path=src, tokenizer=tok)
    out = tmp_path / "out"
    lines = (out / "train.tsv").read_text().splitlines()
    assert stats["conversations"] == 30 and stats["test_conversations"] == 5
    assert stats["train_lines"] == len(lines) > 0
    assert json.loads((out / "data.json").read_text())["train_lines"] == len(lines)
    trained, conv_of = set(), {}
    for line in lines:
        turns = parse_line(line)
        assert [w for w, _ in turns] == ["0.0"] + ["1.0"] * (len(turns) - 1)
        assert sum(len(encode(tok, t)) + 1 for _, t in turns) <= 24  # one prepro feature per line
        for _, t in turns[1:]:
            assert t not in trained  # every turn is a target at most once
            trained.add(t)
        conv_of.update({t: t.split()[1] for _, t in turns})
    test_ids = {ln.split("\t")[0].split(":")[0] for ln in (out / "test.contexts.tsv").read_text().splitlines()}
    assert len(test_ids) == 5
    train_convs = {f"id{int(c):03d}" for c in conv_of.values()}
    assert not train_convs & test_ids  # held out by conversation
    # every turn after a train conversation's first is trained (all fit the budget here)
    expected = {f"conv {int(c[2:])} turn {t} hello and more {int(c[2:])}.{t}" for c in train_convs
                for t in range(1, 6)}
    assert trained == expected
    ctx = (out / "test.contexts.tsv").read_text().splitlines()
    refs = (out / "test.refs.tsv").read_text().splitlines()
    assert len(ctx) == len(refs) == stats["test_examples"] == 5
    for c, r in zip(ctx, refs):
        key, context = c.split("\t")
        r_ctx, ref = r.split("\t")
        assert context == r_ctx and ref and "EOS" not in ref
        i = int(key.split(":")[1])
        assert ref.startswith(f"conv {int(key[2:5])} turn {i} ")
        assert len(context.split(" EOS ")) <= 3


def test_split_is_seeded(tmp_path, tok):
    src = write_dataset(tmp_path / "dataset.json")
    a = cc.convert(tmp_path / "a", n_test=5, seed=1, path=src, tokenizer=tok)
    b = cc.convert(tmp_path / "b", n_test=5, seed=1, path=src, tokenizer=tok)
    c = cc.convert(tmp_path / "c", n_test=5, seed=2, path=src, tokenizer=tok)
    assert a["train_sha256"] == b["train_sha256"] != c["train_sha256"]
    assert (tmp_path / "a" / "test.refs.tsv").read_text() == (tmp_path / "b" / "test.refs.tsv").read_text()


def test_errors_name_the_file(tmp_path, tok):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(cc.DataError, match="bad.json"):
        cc.convert(tmp_path / "o", path=bad, tokenizer=tok)
    src = write_dataset(tmp_path / "dataset.json", n=4)
    with pytest.raises(cc.DataError, match="cannot hold out 10"):
        cc.convert(tmp_path / "o", n_test=10, path=src, tokenizer=tok)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"x": {"messages": [["just a string"]]}}))
    with pytest.raises(cc.DataError, match="wrong.json: conversation x"):
        cc.convert(tmp_path / "o", path=wrong, tokenizer=tok)


def test_real_package_data(tmp_path, tok):
    stats = cc.convert(tmp_path, n_test=20, seed=42, path=None, tokenizer=tok, max_conversations=300)
    assert stats["conversations"] == 300 and stats["test_examples"] >= 18
    lines = (tmp_path / "train.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 500  # ~19 turns per conversation, several segments each
    assert all(line.count("\t") == 1 and line.startswith("0.0 ") for line in lines)
    assert stats["train_turns_trained"] > 10 * stats["train_conversations"]


def test_main_reports_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert cc.main(["--out_dir", str(tmp_path / "o"), "--dataset", str(bad)]) == 1
    assert "chitchat: error:" in capsys.readouterr().err
