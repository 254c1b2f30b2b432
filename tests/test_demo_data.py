"""lsp_data.dummy: the original's synthetic single-turn set, generated on the fly."""
import re

from lsp_data import dummy

ANSWER_RE = {
    "where do you live ?": r"i live in [a-z ]+ \.",
    "how old are you ?": r"i am \d+ years old \.",
    "what is your favorite color ?": r"my favorite color is [a-z]+ \.",
    "how much money do you have ?": r"i have \d+ dollars \.",
    "how are you doing ?": r"i am doing [a-z ]+ \.",
    "what are you doing for a living ?": r"i am a [a-z]+ \.",
}


def test_six_questions_templated_answers():
    pairs = dummy.pairs(3000, seed=1)
    assert {q for q, _ in pairs} == set(ANSWER_RE) and len(ANSWER_RE) == 6
    for q, a in pairs:
        assert re.fullmatch(ANSWER_RE[q], a), (q, a)
    assert ("what are you doing for a living ?", "i am a admin .") in set(pairs)  # the original's example
    assert dummy.pairs(50, seed=1) == pairs[:50] and dummy.pairs(50, seed=2) != pairs[:50]


def test_generate_files(tmp_path):
    stats = dummy.generate(tmp_path, n_lines=200, n_test=12, n_refs=4, seed=7)
    train = (tmp_path / "train.tsv").read_text().splitlines()
    assert len(train) == stats["train_lines"] == 200
    for line in train:  # the original's prepare4db.sh weighting
        src, tgt = line.split("\t")
        assert src.startswith("0.0 ") and tgt.startswith("1.0 ")
        assert re.fullmatch(ANSWER_RE[src[4:]], tgt[4:])
    ctx = (tmp_path / "test.contexts.tsv").read_text().splitlines()
    refs = [ln.split("\t") for ln in (tmp_path / "test.refs.tsv").read_text().splitlines()]
    assert len(ctx) == len(refs) == 12
    assert all(len(r) == 5 for r in refs)  # context + 4 references
    for c, r in zip(ctx, refs):
        assert c.split("\t")[1] == r[0]
        assert all(re.fullmatch(ANSWER_RE[r[0]], x) for x in r[1:])
