"""Golden agreement with the original pipeline (mteval-v14c, DialoGPT/DSTC-7 dstc.py).

NIST/BLEU/entropy/distinct/length and every intermediate file, for every profile in
golden/eval/synth200/expected.json, plus the DSTC-7 README demo.  METEOR: test_dstc_meteor.py.
"""
from __future__ import annotations

import filecmp
import json

import pytest

from dstc import PROFILES, Corpus, clean_str, evaluate, write_artifacts
from dstc.files import read_lines, read_refs_tsv

PROFILES = list(PROFILES)  # the four profiles of expected.json


def load_case(folder, hyp_name="hyp.txt"):
    """(hypotheses, refs per example) of a golden case folder."""
    return read_lines(folder / hyp_name), read_refs_tsv(folder / "refs.tsv")[1]


def load_expected(folder):
    return json.loads((folder / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def synth(golden):
    folder = golden / "eval" / "synth200"
    return folder, load_case(folder), load_expected(folder)


@pytest.fixture(scope="module")
def synth_scores(synth):
    folder, (hyps, refs), _ = synth
    # max_order=9: compare the whole mteval table, not only the four orders reported
    return {p: evaluate(hyps, refs, profile=p, meteor=False, max_order=9) for p in PROFILES}


def test_clean_str_golden_pairs(golden):
    pairs = [json.loads(line) for line in read_lines(golden / "eval" / "synth200" / "clean_str.jsonl")]
    assert len(pairs) == 922
    bad = [(p["raw"], clean_str(p["raw"]), p["clean"]) for p in pairs if clean_str(p["raw"]) != p["clean"]]
    assert not bad, bad[:3]


@pytest.mark.parametrize("profile", PROFILES)
def test_nist_bleu_rounded_equal(synth, synth_scores, profile):
    exp = synth[2][profile]["hyp"]
    got = synth_scores[profile]
    assert got["n_lines"] == exp["n_lines"]
    assert got["nist"] == exp["nist"]
    assert got["bleu"] == exp["bleu"]


@pytest.mark.parametrize("profile", PROFILES)
def test_nist_bleu_hiprec(synth, synth_scores, profile):
    exp = synth[2][profile]["hyp"]["hiprec"]
    got = synth_scores[profile]["hiprec"]
    for key in ("nist_cum", "bleu_cum", "nist_ind", "bleu_ind"):
        assert got[key] == pytest.approx(exp[key + "_1_9"], rel=1e-9, abs=1e-15), key


@pytest.mark.parametrize("profile", PROFILES)
def test_entropy_distinct_len(synth, synth_scores, profile):
    exp = synth[2][profile]["hyp"]
    got = synth_scores[profile]
    assert got["entropy"] == pytest.approx(exp["entropy"], rel=1e-12)
    assert got["distinct"] == pytest.approx(exp["distinct"], rel=1e-12)
    assert got["avg_len"] == pytest.approx(exp["avg_len"], rel=1e-12)
    for k, v in exp["headline"].items():
        if k != "METEOR":
            assert got["headline"][k] == pytest.approx(v, rel=1e-12), k


ARTIFACTS = ["hyp.txt"] + [f"ref{j}.txt" for j in range(6)] + ["refs_merged.txt", "src.xml", "hyp.xml", "ref.xml"]


@pytest.mark.parametrize("profile", PROFILES)
def test_intermediate_files_byte_identical(synth, tmp_path, profile):
    folder, (hyps, refs), _ = synth
    corpus = Corpus.build(hyps, refs, profile)
    out = write_artifacts(corpus, tmp_path / "sys", source_prefix="sys_cleaned" if corpus.profile.clean else "sys")
    gold = folder / "artifacts" / f"{profile}__hyp"
    differ = [f for f in ARTIFACTS if not filecmp.cmp(out / f, gold / f, shallow=False)]
    assert not differ


def test_dstc7_demo(golden):
    folder = golden / "eval" / "dstc7-demo"
    exp = load_expected(folder)
    hyps = read_lines(folder / "hyp.txt")
    refs = [list(r) for r in zip(read_lines(folder / "ref0.txt"), read_lines(folder / "ref1.txt"))]
    # demo.py passes the two reference files as they are: no cleaning, no slots, no held-out ref
    got = evaluate(hyps, refs, "dialogpt_noclean", meteor=False, n_refs=2, vshuman=-1)
    assert got["nist"] == exp["nist"]
    assert got["bleu"] == exp["bleu"]
    assert got["entropy"] == pytest.approx(exp["entropy"], rel=1e-12)
    assert got["distinct"] == pytest.approx(exp["distinct"], rel=1e-12)
    assert got["avg_len"] == exp["avg_len"]
