"""DialogRPT reranking of generated candidates: the object decode.py, interact.py and serve.py
call where the MMI reranker goes (the same call as lsp_model.decoding.Reranker).

The rule (docs/ranking.md), after DialogRPT's generation.py (`Integrated.predict`):

    rank_score = w * ranker + (1 - w) * p        w = --ranker_weight, default 1 (the ranker alone)

where `ranker` is the ranker's score in [0, 1] (an ensemble's `final`) and `p` is the other
evidence on the same [0, 1] scale, a per-token probability (a geometric mean):
  * without MMI, the generator's: p = exp(logprob / n), n = the candidate's tokens (+ its EOS),
    as DialogRPT's generator reports it;
  * with --reverse_model, MMI's: p = exp(mmi_score / (n_src + mmi_lambda * n)), with n_src the
    source tokens the reverse model scored, i.e. the per-token probability behind the MMI score.
Candidates are scored as the text the caller prints (decoded, cleaned, stripped), with the context
turns as text, so `rank.py` on that text gives the same ranker scores.
"""
from __future__ import annotations

import math

from lsp_model.chat import clean_hypothesis
from lsp_model.tokenizer import decode

from .ranker import FINAL, Ranker, load_ranker


def other_probability(h: dict, mmi_lambda: float) -> float:
    """The [0, 1] evidence besides the ranker: MMI's per-token probability, else the generator's."""
    n = len(h["ids"]) + (1 if h.get("finished", True) else 0)
    if "mmi_score" in h:
        return math.exp(h["mmi_score"] / max(1e-9, h["reverse_tokens"] + mmi_lambda * n))
    return math.exp(h["logprob"] / max(1, n))


class RankerReranker:
    """Candidates ranked by `rank_score` (best first); each gains "ranker_score", "rank_score"
    and, for an ensemble, "ranker_scores" ({member: score, ..., "final"})."""

    def __init__(self, ranker: Ranker, tok, weight: float = 1.0, mmi=None, max_cxt_turn: int | None = None):
        if not 0 <= weight <= 1:
            raise ValueError(f"--ranker_weight must be in [0, 1], not {weight}")
        self.ranker, self.tok, self.weight, self.mmi, self.max_cxt_turn = ranker, tok, weight, mmi, max_cxt_turn

    @property
    def mmi_lambda(self) -> float:  # interact.py's /set mmi_lambda reaches the MMI reranker inside
        return self.mmi.mmi_lambda if self.mmi is not None else 0.0

    @mmi_lambda.setter
    def mmi_lambda(self, value: float) -> None:
        if self.mmi is not None:
            self.mmi.mmi_lambda = value

    def __call__(self, contexts_turns: list[list[list[int]]], hyps: list[list[dict]]) -> list[list[dict]]:
        if self.mmi is not None:
            hyps = self.mmi(contexts_turns, hyps)
        ctx = [[decode(self.tok, t) for t in turns] for turns in contexts_turns]
        texts = [[clean_hypothesis(decode(self.tok, h["ids"])) for h in hs] for hs in hyps]
        scores = self.ranker.score(ctx, texts, self.max_cxt_turn)
        w, out = self.weight, []
        for hs, s in zip(hyps, scores):
            rows = []
            for j, h in enumerate(hs):
                r = s[FINAL][j]
                mixed = r if w == 1 else w * r + (1 - w) * other_probability(h, self.mmi_lambda)
                row = h | {"ranker_score": r, "rank_score": mixed}
                if not self.ranker.single:
                    row["ranker_scores"] = {k: v[j] for k, v in s.items()}
                rows.append(row)
            out.append(sorted(rows, key=lambda h: -h["rank_score"]))
        return out


def load_ranker_reranker(args, tok, device: str, mmi=None) -> RankerReranker:
    """From decode/interact/serve flags (lsp_model.generation_args.add_ranker_args)."""
    ranker = load_ranker(args.ranker, args.ranker_dtype, device, getattr(args, "ranker_batch_size", 32))
    return RankerReranker(ranker, tok, args.ranker_weight, mmi, args.max_cxt_turn)
