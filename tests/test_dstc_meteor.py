"""METEOR 1.5 through the real jar: golden values of every case.

Each jar run costs ~8 s (paraphrase table), so one module fixture starts every run at once
(4 at a time) and the tests only read the values.  Skipped, with the reason, only where
java or the pycocoevalcap jar is absent (CI has both: the `test` extra + a JRE).
"""
from __future__ import annotations

import json
import math

import pytest

from dstc import Corpus, evaluate, get_profile
from dstc.files import read_lines, read_refs_tsv
from dstc.metrics.meteor import Meteor

pytestmark = pytest.mark.meteor


def _case(folder):
    return read_lines(folder / "hyp.txt"), read_refs_tsv(folder / "refs.tsv")[1]


@pytest.fixture(scope="module")
def meteor():
    met = Meteor()
    missing = met.available()
    if missing:
        pytest.skip(missing)
    return met


@pytest.fixture(scope="module")
def runs(golden, meteor):
    """name -> METEOR value, for every case below (jar runs overlapped, 4 at a time)."""
    ev = golden / "eval"
    hyps, refs = _case(ev / "synth200")
    demo = ev / "dstc7-demo"
    demo_refs = [list(r) for r in zip(read_lines(demo / "ref0.txt"), read_lines(demo / "ref1.txt"))]
    pipe_h, pipe_r = _case(ev / "edge_pipe_in_ref")
    corpora = {
        "dialogpt": Corpus.build(hyps, refs, "dialogpt"),
        "dialogpt_vshuman_off": Corpus.build(hyps, refs, "dialogpt_vshuman_off"),
        "dialogpt_noclean": Corpus.build(hyps, refs, "dialogpt_noclean"),
        "demo": Corpus.build(read_lines(demo / "hyp.txt"), demo_refs,
                             get_profile("dialogpt_noclean").with_overrides(n_refs=2, vshuman=-1)),
        "edge_all_refs_empty": Corpus.build(*_case(ev / "edge_all_refs_empty"), "dstc7"),
        "edge_pipe_truncated": Corpus.build(pipe_h, [[r.split("|")[0] for r in rs] for rs in pipe_r], "dialogpt"),
    }
    names, out = list(corpora), {}
    for i in range(0, len(names), 4):
        started = {n: meteor.start(corpora[n].hyps, corpora[n].refs) for n in names[i:i + 4]}
        out.update({n: r.result() for n, r in started.items()})
    return out


@pytest.mark.parametrize("profile", ["dialogpt", "dialogpt_vshuman_off", "dialogpt_noclean"])
def test_synth200_meteor_equals_printed_double(golden, runs, profile):
    exp = json.loads((golden / "eval" / "synth200" / "expected.json").read_text())
    assert runs[profile] == exp[profile]["hyp"]["meteor"]
    assert exp["dstc7"]["hyp"]["meteor"] == exp["dialogpt"]["hyp"]["meteor"]  # same jar input


def test_demo_meteor_with_norm(golden, runs):
    exp = json.loads((golden / "eval" / "dstc7-demo" / "expected.json").read_text())
    assert runs["demo"] == exp["meteor_norm"]


def test_edge_cases_meteor(runs):
    assert runs["edge_all_refs_empty"] == 0.3342172497247408  # EDGE_CASES.md, dstc7 profile
    assert runs["edge_pipe_truncated"] == 0.36478117502565555  # original's truncation emulated


def test_evaluate_runs_meteor_end_to_end(golden, meteor):
    # rule: the empty last hypothesis is kept (3 lines, not 2): a real score, not -1 or a crash
    hyps, refs = _case(golden / "eval" / "edge_last_hyp_empty")
    got = evaluate(hyps, refs, "dialogpt", meteor=True)
    assert got["meteor_status"] == "ok" and got["n_lines"] == 3
    assert math.isfinite(got["meteor"]) and "meteor:1.5" in got["signature"]
