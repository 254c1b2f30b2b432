"""End to end on the real DSTC-7 human-evaluation data (954 instances, 10 systems): sanity
properties that must hold whatever the subset (scores are not comparable with the published
2208-line table)."""
from __future__ import annotations

import math

import pytest

from dstc import evaluate
from dstc.files import read_lines, read_refs_tsv


@pytest.fixture(scope="module")
def real(shared_dir):
    folder = shared_dir / "data" / "dstc7-humaneval"
    refs = read_refs_tsv(folder / "refs.tsv")[1]
    return {name: evaluate(read_lines(folder / f"hyp.{name}.txt"), refs, "dialogpt", meteor=False)
            for name in ("Constant", "Human", "Random")}


def test_constant_system_entropy_is_log_of_distinct_ngrams(real):
    s = real["Constant"]  # "i don't know what you mean." -> 8 tokens after clean_str
    assert s["n_lines"] == 954 and s["avg_len"] == 8.0
    for n, h in enumerate(s["entropy"], 1):
        assert h == pytest.approx(math.log(8 - n + 1), rel=1e-12)
    assert s["distinct"] == pytest.approx([8 / (954 * 8), 7 / (954 * 7)], rel=1e-12)


def test_human_beats_random(real):
    assert real["Human"]["bleu"][1] > real["Random"]["bleu"][1]
    assert real["Human"]["nist"][1] > real["Random"]["nist"][1]
