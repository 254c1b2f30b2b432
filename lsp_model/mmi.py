"""MMI reranking (Zhang et al. 2020, sec. 4.2): score candidates with a reverse model.

The reverse model is trained on `prepro.py --reverse` features: the turn list is reversed, so
its input is the response turn, EOS, then the context turns newest-first, each followed by EOS,
with the loss on the context turns. Scoring a candidate therefore builds exactly

    input  = cand EOS t_n EOS t_(n-1) ... EOS t_1          (labels pre-shifted, as in prepro)
    labels = [-1] * len(cand) + t_n EOS t_(n-1) EOS ... t_1 EOS

and log P(source | candidate) is the sum of the log-probabilities of the labelled tokens. The
pick is

    score = log P(source | cand) + mmi_lambda * log P(cand | source)

with mmi_lambda = 0 by default (the paper's pure reverse-model rerank). Sums, not means: every
candidate of one context predicts the same source tokens, so for lambda = 0 the ranking is the
same as with the original's per-example mean NLL (forward_pointwise), and for lambda > 0 both
terms are total log-probabilities on one scale.
"""
from __future__ import annotations

import torch

from .model import token_nll


def reverse_example(context_turns: list[list[int]], candidate: list[int], eos: int,
                    max_len: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one candidate for the reverse model, cut on the right (the
    oldest context turns go first) to max_len tokens."""
    full = list(candidate) + [eos]
    for t in reversed(context_turns):
        full += list(t) + [eos]
    full = full[:max_len + 1]
    n_cand = min(len(candidate), len(full) - 1)
    return full[:-1], [-1] * n_cand + full[n_cand + 1:]


@torch.no_grad()
def reverse_logprob(model, examples: list[tuple[list[int], list[int]]], eos: int,
                    batch_size: int = 32) -> list[float]:
    """Sum of log P(label tokens) per example under `model`, batched (right padding: causal
    attention keeps real tokens from seeing the pads), `batch_size` rows at a time."""
    device = next(model.parameters()).device
    out: list[float] = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        L = max(len(x) for x, _ in chunk)
        ids = torch.full((len(chunk), L), eos, dtype=torch.long)
        labels = torch.full((len(chunk), L), -1, dtype=torch.long)
        mask = torch.zeros((len(chunk), L), dtype=torch.long)
        for r, (x, y) in enumerate(chunk):
            ids[r, :len(x)], labels[r, :len(y)], mask[r, :len(x)] = torch.tensor(x), torch.tensor(y), 1
        ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
        pos = torch.arange(L, device=device).expand_as(ids)
        logits = model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=False).logits
        out += (-token_nll(logits, labels).sum(1)).tolist()
    return out


def rerank(reverse_model, context_turns: list[list[int]], hyps: list[dict], eos: int,
           mmi_lambda: float = 0.0, batch_size: int = 32, to_reverse_ids=None) -> list[dict]:
    """Score each hypothesis ({"ids", "logprob"}) of one context and return them best first,
    each with "reverse_logprob", "mmi_score" and "reverse_tokens" (source tokens scored) added. `eos` is the reverse tokenizer's EOS."""
    return rerank_batch(reverse_model, [context_turns], [hyps], eos, mmi_lambda, batch_size, to_reverse_ids)[0]


def rerank_batch(reverse_model, contexts_turns: list[list[list[int]]], hyps: list[list[dict]], eos: int,
                 mmi_lambda: float = 0.0, batch_size: int = 32, to_reverse_ids=None) -> list[list[dict]]:
    """`rerank` for many contexts at once: all candidates of all contexts share the batches.
    `to_reverse_ids` maps forward token ids to the reverse model's tokenizer (identity when both
    share one); the reverse model may be of any size."""
    conv = to_reverse_ids or (lambda ids: ids)
    max_len = reverse_model.config.n_positions
    ex, owner = [], []
    for c, (turns, hs) in enumerate(zip(contexts_turns, hyps)):
        rev_ctx = [conv(t) for t in turns]
        for h in hs:
            ex.append(reverse_example(rev_ctx, conv(h["ids"]), eos, max_len))
            owner.append(c)
    scores = reverse_logprob(reverse_model, ex, eos, batch_size)
    out: list[list[dict]] = [[] for _ in hyps]
    k = 0
    for c, hs in enumerate(hyps):
        for h in hs:
            s = scores[k]
            out[c].append(h | {"reverse_logprob": s, "mmi_score": s + mmi_lambda * h["logprob"],
                               "reverse_tokens": sum(y >= 0 for y in ex[k][1])})
            k += 1
    return [sorted(o, key=lambda h: -h["mmi_score"]) for o in out]
