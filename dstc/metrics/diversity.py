"""Entropy-n, Distinct-n and average length of the hypotheses (python part of the original).

Tokens are ``line.split()`` of the (cleaned) hypotheses - not mteval's tokens - so ``__url__``
and ``:)`` are one token here.  All corpus level.
"""
from __future__ import annotations

import math
from collections import Counter

from .base import Metric

__all__ = ["Entropy", "Distinct", "AvgLen"]


def _ngrams(lines: list[list[str]], n: int) -> Counter:
    counts: Counter = Counter()
    for words in lines:
        counts.update(zip(*[words[k:] for k in range(n)]))
    return counts


class Entropy(Metric):
    """``H_n = -Σ_g p_g ln p_g`` over all hypothesis n-grams (nats, no smoothing; 0 if none).

    Args:
        max_order: n = 1..max_order (the paper reports Entropy-4).
    """

    name = "entropy"

    def __init__(self, max_order: int = 4):
        self.max_order = max_order

    def corpus_score(self, corpus) -> dict:
        lines = corpus.whitespace_hyps()
        out = []
        for n in range(1, self.max_order + 1):
            counts = _ngrams(lines, n)
            total = sum(counts.values())
            log_total = math.log(total) if total else 0.0
            # same expression and summation order (first occurrence) as the original
            out.append(sum(-v / total * (math.log(v) - log_total) for v in counts.values()))
        return {"entropy": out}


class Distinct(Metric):
    """``#distinct n-grams / #n-grams`` over all hypotheses.

    Rule where the original raised ZeroDivisionError (no n-gram at all): 0.0.

    Args:
        max_order: n = 1..max_order (the paper reports Distinct-1 and -2).
    """

    name = "distinct"

    def __init__(self, max_order: int = 2):
        self.max_order = max_order

    def corpus_score(self, corpus) -> dict:
        lines = corpus.whitespace_hyps()
        out = []
        for n in range(1, self.max_order + 1):
            counts = _ngrams(lines, n)
            total = sum(counts.values())
            out.append(len(counts) / total if total else 0.0)
        return {"distinct": out}


class AvgLen(Metric):
    """Mean number of whitespace tokens per hypothesis (empty hypotheses count as 0)."""

    name = "avg_len"

    def corpus_score(self, corpus) -> dict:
        lengths = [len(w) for w in corpus.whitespace_hyps()]
        return {"avg_len": sum(lengths) / len(lengths)}
