"""NIST-n and BLEU-n exactly as ``mteval-v14c.pl`` computes them (corpus level, pure Python).

Per segment (hypothesis vs. its ``n_refs`` slot references, duplicates kept):

* ``match[n] += Σ_g min(count_hyp(g), max_ref count(g))``; ``tinfo[n]`` the same, weighted
  by the information ``info(g)``; ``tcnt[n] += max(0, len_hyp - n + 1)``;
  ``rcnt[n] += Σ_refs max(0, len_ref - n + 1)``; ``reflen +=`` closest ref length (ties:
  shorter).
* ``info(w1..wn) = -log2(C(w1..wn) / C(w1..wn-1))`` and ``info(w) = -log2(C(w) / #ref words)``,
  counts over *all* reference segments of *all* slots.  Perl quirk kept: a bigram whose first
  word is ``0`` is weighted as a unigram (``$mgram ? ... : ...`` treats the string "0" as false).

Scores (``cum`` = the cumulative table the DSTC code parses, ``ind`` = individual):

* ``NIST-N = LP · Σ_{n<=N} tinfo[n] / max(tcnt[n], 1)``,
  ``LP = nist_lp(tcnt[1] / (rcnt[1] / n_refsets))``.
* ``BLEU-N = BP · exp(Σ_{n<=N} ln p_n / N)``, ``BP = exp(min(0, 1 - reflen / tcnt[1]))``,
  smoothing ``p_n = 1 / (2^k · tcnt[n])`` for the k-th order without a match.

Where mteval dies (a segment whose references are all empty: division by zero in the
*segment-level* NIST that nobody reads) the corpus sums above are still well defined and are
used as they are; with no reference word in the whole corpus the NIST length penalty is 1
(nothing can match, so NIST is 0).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from .base import Metric

__all__ = ["NistBleu", "NistBleuStats", "ngram_counts", "nist_length_penalty"]

_LOG2 = math.log(2)
# mteval: ratio_x = 1.5, score_x = 0.5
_BETA = -math.log(0.5) / math.log(1.5) / math.log(1.5)


def ngram_counts(words: list[str], max_order: int) -> Counter:
    """All n-grams (tuples) of orders 1..max_order with their counts (mteval Words2Ngrams)."""
    counts: Counter = Counter()
    for n in range(1, min(max_order, len(words)) + 1):
        counts.update(zip(*[words[k:] for k in range(n)]))
    return counts


def nist_length_penalty(ratio: float) -> float:
    """mteval's NIST brevity penalty: 1 at ratio >= 1, 0.5 at ratio 2/3, 0 at ratio <= 0."""
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    return math.exp(-_BETA * math.log(ratio) * math.log(ratio))


@dataclass
class NistBleuStats:
    """Corpus sufficient statistics; index n-1 holds order n."""

    max_order: int
    n_refsets: int
    reflen: int = 0
    match: list[int] = field(default_factory=list)
    tcnt: list[int] = field(default_factory=list)
    rcnt: list[int] = field(default_factory=list)
    tinfo: list[float] = field(default_factory=list)

    def __post_init__(self):
        for name in ("match", "tcnt", "rcnt"):
            if not getattr(self, name):
                setattr(self, name, [0] * self.max_order)
        if not self.tinfo:
            self.tinfo = [0.0] * self.max_order

    def nist(self) -> tuple[list[float], list[float]]:
        """(cumulative, individual) NIST for n = 1..max_order."""
        if self.rcnt[0] == 0:
            lp = 1.0  # no reference word anywhere: mteval divides by zero; nothing matched
        else:
            lp = nist_length_penalty(self.tcnt[0] / (self.rcnt[0] / self.n_refsets))
        cum, ind, score = [], [], 0.0
        for n in range(self.max_order):
            iscore = self.tinfo[n] / max(self.tcnt[n], 1)
            score += iscore
            cum.append(score * lp)
            ind.append(iscore * lp)
        return cum, ind

    def bleu(self) -> tuple[list[float], list[float]]:
        """(cumulative, individual) smoothed BLEU for n = 1..max_order."""
        bp = math.exp(min(0.0, 1 - self.reflen / self.tcnt[0])) if self.tcnt[0] > 0 else 0.0
        cum, ind, score, smooth = [], [], 0.0, 1
        for n in range(self.max_order):
            if self.tcnt[n] == 0:
                iscore = 0.0
            elif self.match[n] == 0:
                smooth *= 2
                iscore = math.log(1 / (smooth * self.tcnt[n]))
            else:
                iscore = math.log(self.match[n] / self.tcnt[n])
            ind.append(math.exp(iscore))
            score += iscore
            cum.append(math.exp(score / (n + 1)) * bp)
        return cum, ind


class NistBleu(Metric):
    """mteval-v14c NIST and BLEU (default flags: lower-case, closest BP, smoothing on).

    Args:
        max_order: highest n computed (mteval computes 9; the DSTC tables use 1..4 and the
            orders above ``max_order`` do not change them).
    """

    name = "mteval"

    def __init__(self, max_order: int = 4):
        self.max_order = max_order

    def signature(self) -> str:
        """mteval-v14c, ported: 13a tokenisation with URLs kept, lower-cased, closest-reference
        brevity penalty, NIST geometric smoothing."""
        return "mteval:v14c(py,13a+url,lc,closest,smooth)"

    def corpus_score(self, corpus) -> dict:
        stats = self.corpus_stats(corpus.mteval_hyps(), corpus.mteval_refs())
        nist_cum, nist_ind = stats.nist()
        bleu_cum, bleu_ind = stats.bleu()
        return {
            "nist": [round4(x) for x in nist_cum[:4]],
            "bleu": [round4(x) for x in bleu_cum[:4]],
            "hiprec": {"nist_cum": nist_cum, "bleu_cum": bleu_cum,
                       "nist_ind": nist_ind, "bleu_ind": bleu_ind},
        }

    def corpus_stats(self, hyps: list[list[str]], refs: list[list[list[str]]]) -> NistBleuStats:
        """Sufficient statistics.

        Args:
            hyps: mteval words of each hypothesis.
            refs: per segment, the mteval words of each reference slot (``refs[i][j]`` = slot
                ``j`` of segment ``i``; every segment has the same number of slots).
        """
        N = self.max_order
        n_refsets = len(refs[0]) if refs else 0
        # Each segment's slots repeat the same few references: count every distinct one once.
        seg_refs = [Counter(tuple(w) for w in slots) for slots in refs]
        seg_ngrams = [{r: ngram_counts(list(r), N) for r in distinct} for distinct in seg_refs]

        # n-gram information weights over every reference segment of every slot file
        total: Counter = Counter()
        tot_words = 0
        for distinct, grams in zip(seg_refs, seg_ngrams):
            for r, mult in distinct.items():
                tot_words += len(r) * mult
                if mult == 1:
                    total.update(grams[r])
                else:
                    total.update({g: c * mult for g, c in grams[r].items()})
        info_cache: dict[tuple, float] = {}

        def info(g: tuple) -> float:
            v = info_cache.get(g)
            if v is None:
                # Perl `$mgram ? C(g)/C(prefix) : C(g)/tot_words`: prefix "" or "0" is false.
                if len(g) == 1 or (len(g) == 2 and g[0] == "0"):
                    v = -math.log(total[g] / tot_words) / _LOG2
                else:
                    v = -math.log(total[g] / total[g[:-1]]) / _LOG2
                info_cache[g] = v
            return v

        st = NistBleuStats(max_order=N, n_refsets=n_refsets)
        match, tcnt, rcnt, tinfo = st.match, st.tcnt, st.rcnt, st.tinfo
        for hyp, distinct, grams in zip(hyps, seg_refs, seg_ngrams):
            lh = len(hyp)
            for n in range(min(N, lh)):
                tcnt[n] += lh - n
            best = None
            for r, mult in distinct.items():
                lr = len(r)
                for n in range(min(N, lr)):
                    rcnt[n] += (lr - n) * mult
                if best is None or abs(lh - lr) < abs(lh - best) or (abs(lh - lr) == abs(lh - best) and lr < best):
                    best = lr
            st.reflen += best or 0
            if not lh:
                continue
            hyp_grams = ngram_counts(hyp, N)
            maxref: dict = {}
            for c in grams.values():
                for g in hyp_grams.keys() & c.keys():  # only n-grams that can match
                    if c[g] > maxref.get(g, 0):
                        maxref[g] = c[g]
            for g, m in maxref.items():
                c = hyp_grams[g]
                m = c if c < m else m
                n = len(g) - 1
                match[n] += m
                tinfo[n] += info(g) * m
        return st


def round4(x: float) -> float:
    """mteval prints ``%2.4f``; the DSTC code parses that back into a float."""
    return float(f"{x:.4f}")
