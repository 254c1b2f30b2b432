"""Where the original crashed or silently mis-scored: the rule chosen for each, and the pieces
(slots, tokenisers, line splitting) those rules rest on."""
from __future__ import annotations

import math
import random

import pytest

from dstc import Corpus, evaluate
from dstc.files import read_lines, read_refs_tsv, write_lines
from dstc.metrics.nist_bleu import NistBleu
from dstc.mteval_tokenizer import tokenize, tokenize_per_token
from dstc.slots import fill_slots, slot_indices, strip_score


def _case(folder):
    return read_lines(folder / "hyp.txt"), read_refs_tsv(folder / "refs.tsv")[1]


@pytest.mark.parametrize("n,expected", [
    (1, [0, 0, 0, 0, 0, 0]), (2, [0, 0, 0, 0, 0, 0]), (3, [0, 2, 2, 0, 2, 2]),
    (4, [0, 2, 2, 3, 0, 2]), (5, [0, 2, 2, 3, 4, 0]), (6, [0, 2, 2, 3, 4, 5]), (9, [0, 2, 2, 3, 4, 5])])
def test_slot_table_vshuman_1(n, expected):
    assert slot_indices(n, 6, 1) == expected


def test_slot_table_vshuman_off():
    assert slot_indices(2, 6, -1) == [0, 1, 0, 1, 0, 1]
    assert slot_indices(4, 6, -1) == [0, 1, 2, 3, 0, 1]


def test_example_without_references_gets_empty_slots():
    assert fill_slots([], 6, 1) == [""] * 6


def test_pipe_rule_keeps_the_whole_reference():
    assert strip_score("1|the cat | sat on the mat .") == "the cat | sat on the mat ."
    assert strip_score("no score here") == "no score here"


def test_edge_last_hyp_empty_scores_all_lines(golden):
    hyps, refs = _case(golden / "eval" / "edge_last_hyp_empty")
    assert hyps[-1] == ""
    for profile in ("dialogpt", "dstc7"):
        got = evaluate(hyps, refs, profile, meteor=False)
        assert got["n_lines"] == 3  # original: crash (dialogpt) or 2 lines (dstc7)
        assert got["avg_len"] == pytest.approx((6 + 3 + 0) / 3)
        assert all(math.isfinite(x) for x in got["nist"] + got["bleu"])
    # dialogpt: the empty hypothesis adds no word; dstc7: it is `__empty__` = 5 mteval words
    dg = evaluate(hyps, refs, "dialogpt", meteor=False)
    d7 = evaluate(hyps, refs, "dstc7", meteor=False)
    assert dg["bleu"] != d7["bleu"]


def test_empty_last_line_survives_files(tmp_path):
    write_lines(tmp_path / "h.txt", ["a", "b", ""])
    assert read_lines(tmp_path / "h.txt") == ["a", "b", ""]
    write_lines(tmp_path / "g.txt", ["a", "b"])
    assert (tmp_path / "g.txt").read_text() == "a\nb"  # the original's bytes when it worked


def test_edge_all_refs_empty(golden):
    hyps, refs = _case(golden / "eval" / "edge_all_refs_empty")
    # dstc7 profile survives in the original: same numbers (EDGE_CASES.md)
    d7 = evaluate(hyps, refs, "dstc7", meteor=False)
    assert d7["nist"] == [1.5361, 1.7027, 1.7027, 1.7027]
    assert d7["bleu"] == [0.4424, 0.3921, 0.2775, 0.2231]
    # dialogpt: original died ("Illegal division by zero", segment-level NIST). Rule: the
    # corpus sums are used as they are - the segment adds its hypothesis n-grams (no match)
    # and reference length 0.
    corpus = Corpus.build(hyps, refs, "dialogpt")
    assert corpus.refs[1] == [""] * 6
    got = evaluate(hyps, refs, "dialogpt", meteor=False)
    assert all(math.isfinite(x) and x > 0 for x in got["nist"] + got["bleu"])
    st = NistBleu(4).corpus_stats(corpus.mteval_hyps(), corpus.mteval_refs())
    h = corpus.mteval_hyps()
    assert st.tcnt[0] == sum(len(w) for w in h)
    assert st.reflen == len(corpus.mteval_refs()[0][0]) + 0 + min(len(r) for r in corpus.mteval_refs()[2])


def test_no_reference_words_at_all():
    got = evaluate(["a b", ""], [["\U0001F600"], []], "dialogpt", meteor=False)
    assert got["nist"] == [0.0] * 4  # mteval: division by zero; nothing can match
    assert got["bleu"][0] == 0.25  # smoothed 1/(2 * 2 words), no brevity penalty (ref length 0)


def test_all_hypotheses_empty():
    got = evaluate(["", " "], [["a b"], ["c"]], "dialogpt", meteor=False)
    assert got["nist"] == [0.0] * 4 and got["bleu"] == [0.0] * 4
    assert got["entropy"] == [0.0] * 4 and got["distinct"] == [0.0, 0.0]  # original: ZeroDivisionError
    assert got["avg_len"] == 0.0


def test_edge_pipe_in_ref(golden):
    hyps, refs = _case(golden / "eval" / "edge_pipe_in_ref")
    # the original's truncation, emulated, reproduces its numbers (both profiles)
    trunc = [[r.split("|")[0] for r in rs] for rs in refs]
    for profile in ("dialogpt", "dstc7"):
        got = evaluate(hyps, trunc, profile, meteor=False)
        assert got["nist"] == [2.0172] * 4
        assert got["bleu"] == [0.6364, 0.5641, 0.3992, 0.3209]
    # rule: refs.tsv references are taken whole, `|` included
    whole = evaluate(hyps, refs, "dialogpt", meteor=False)
    assert whole["bleu"] != [0.6364, 0.5641, 0.3992, 0.3209]


def test_line_count_mismatch_names_both_counts():
    with pytest.raises(ValueError, match=r"has 2 lines but .* has 3 examples"):
        evaluate(["a", "b"], [["a"], ["b"], ["c"]], meteor=False)


def test_lines_split_on_newline_only(tmp_path):
    p = tmp_path / "h.txt"
    p.write_bytes("one\u2028still one\r\ntwo\x85two\nthree".encode())
    assert read_lines(p) == ["one\u2028still one", "two\x85two", "three"]


def test_synth200_u2028_line(golden):
    hyps = read_lines(golden / "eval" / "synth200" / "hyp.txt")
    assert len(hyps) == 200 and "\u2028" in hyps[20]


def test_perl_zero_prefix_quirk():
    # `$mgram ? ...` is false for the prefix "0": the bigram "0 x" is weighted by unigram totals
    refs = [[["0", "x", "0", "y"]], [["0", "x"]]]
    st = NistBleu(2).corpus_stats([["0", "x"], ["0", "x"]], refs)
    tot = 6  # reference words
    c_0x = 2
    expected = 2 * (-math.log(c_0x / tot) / math.log(2))  # not -log2(C(0 x)/C(0)) = -log2(2/3)
    assert st.tinfo[1] == pytest.approx(expected)


def test_mteval_tokenizer_examples():
    assert tokenize("__url__") == ["_", "_", "url", "_", "_"]
    assert tokenize(":) !!! n't 's 3.14 1,000") == [":", ")", "!", "!", "!", "n't", "'s", "3.14", "1,000"]
    assert tokenize("Hello HTTP://X.Y See http://Ex.com/A") == ["hello", "http", ":", "/", "/", "x", ".", "y",
                                                               "see", "http://Ex.com/A"]
    assert tokenize("caf\u00e9\u00a0ÉTÉ") == ["caf\u00e9", "ÉtÉ"]  # NBSP splits; lower-casing is ASCII only


def test_mteval_fast_path_equals_per_token_loop():
    rng = random.Random(0)
    alphabet = "ab01.,-'\"!?()[]{}<>&;:/_~ \u00a0\u2028xyZ"
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        assert tokenize(s) == tokenize_per_token(s), repr(s)


def test_meteor_progress_goes_to_the_callback(tmp_path):
    """The jar's `Segment i score:` lines drive progress lines (python -m dstc prints them on
    stderr), and the final score is still parsed. A stand-in process plays the jar."""
    import subprocess
    import sys

    from dstc.metrics.meteor import MeteorRun
    script = ("import sys\nprint('Meteor version: 1.5')\n"
              "for i in range(5): print(f'Segment {i + 1} score:\\t0.5')\n"
              "print('Final score:\\t\\t0.4321')\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    said = []
    run = MeteorRun(proc, None, n_segments=5, progress=said.append, every=0.0)
    assert run.result() == 0.4321
    assert said[0].startswith("METEOR: started the jar on 5 segments")
    assert [s.split(" segments")[0] for s in said[1:]] == [f"METEOR: {i}/5" for i in range(1, 6)]


def test_evaluate_uses_the_metric_contract(monkeypatch):
    """METEOR is one Metric among others: begin() then collect, its signature() in the line."""
    from dstc import evaluate
    from dstc.metrics.meteor import Meteor
    monkeypatch.setattr(Meteor, "available", lambda self: None)
    monkeypatch.setattr(Meteor, "begin", lambda self, corpus: lambda: {"meteor": 0.25})
    monkeypatch.setattr(Meteor, "signature", lambda self: "meteor:stand-in")
    got = evaluate(["a reply", "another one"], [["a reply"], ["one more"]], n_refs=1, vshuman=-1)
    assert got["meteor"] == 0.25 and got["meteor_status"] == "ok"
    assert "|mteval:v14c(py,13a+url,lc,closest,smooth)|meteor:stand-in|" in got["signature"]
    monkeypatch.setattr(Meteor, "available", lambda self: "METEOR unavailable: no java")
    got = evaluate(["a reply"], [["a reply"]], n_refs=1, vshuman=-1)
    assert got["meteor"] is None and got["meteor_status"] == "METEOR unavailable: no java"
    assert "|meteor:n/a|" in got["signature"]
