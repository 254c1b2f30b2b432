"""DialogRPT scoring speed: lsp_rank's batched path (each context once, its candidates on its KV
cache, contexts batched together) against a faithful re-implementation of the original's
`ScorerBase.predict` + `Scorer.core` loop (one context at a time, all its candidates in one padded
batch with an attention mask, the score head over every position, a Python loop picking each
candidate's last token). Same model, same tokenizer (ours, fast, for both: the original's Python
GPT2Tokenizer would only widen the gap), outputs checked equal. Interleaved rounds in one process;
contexts/s median [min-max] and per-round ratios, with the load average.

    python benchmarks/bench_rank.py                       # 32 contexts x 16 candidates, 4 x 256 ranker
    python benchmarks/bench_rank.py --size released       # DialogRPT's own 24 x 1024 (slow on CPU)
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from common import interleaved, load, machine, ratio_rounds, summary, write_json  # noqa: E402
from lsp_data.chitchat import load_conversations  # noqa: E402
from lsp_model.model import make_config  # noqa: E402
from lsp_model.tokenizer import EOS_ID, encode, load_tokenizer  # noqa: E402
from lsp_rank.ranker import FINAL, Member, Ranker  # noqa: E402

SIZES = {"small": dict(n_layer=4, n_embd=256, n_head=4), "released": dict(n_layer=24, n_embd=1024, n_head=16)}


def cases(n_ctx: int, n_cand: int, turns: int, seed: int = 0):
    """chitchat-dataset: the `turns` turns before a reply as the context; candidates = the real
    reply and n_cand - 1 replies of other conversations."""
    convs = [t for t in load_conversations().values() if len(t) > turns]
    rng = random.Random(seed)
    picked = rng.sample(convs, n_ctx)
    pool = [t[turns] for t in convs]
    return [(c[:turns], [c[turns]] + rng.sample(pool, n_cand - 1)) for c in picked]


@torch.no_grad()
def original_predict(model, tok, turns: list[str], hyps: list[str]) -> list[float]:
    """DialogRPT ScorerBase.predict + Scorer.core, step for step, for one context."""
    ids_cxt = []
    for turn in turns:
        ids_cxt += encode(tok, turn.strip()) + [EOS_ID]
    seqs, lens = [], []
    for hyp in hyps:
        seq = ids_cxt + encode(tok, hyp.strip())
        lens.append(len(seq))
        seqs.append(seq)
    max_len = max(lens)
    ids = torch.LongTensor([seq + [EOS_ID] * (max_len - len(seq)) for seq in seqs])
    attention_mask = torch.ones_like(ids)
    for i in range(ids.shape[0]):
        attention_mask[i, lens[i]:] *= 0
    hidden_states = model.transformer(ids, attention_mask=attention_mask).last_hidden_state
    logits = model.score(hidden_states).squeeze(-1)
    logits = torch.stack([logits[i, lens[i] - 1] for i in range(ids.shape[0])])
    return torch.sigmoid(logits).tolist()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--contexts", type=int, default=32)
    p.add_argument("--candidates", type=int, default=16)
    p.add_argument("--turns", type=int, default=5, help="context turns")
    p.add_argument("--batch_size", type=int, default=32, help="rows per forward pass (both paths)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the rows as JSON")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from transformers import GPT2ForSequenceClassification
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(make_config(**SIZES[a.size], num_labels=1, pad_token_id=EOS_ID)).eval()
    tok = load_tokenizer()
    ranker = Ranker({"m": model}, {"prior": [], "cond": [Member(FINAL, 1.0, "m")]}, tok, True, a.batch_size)
    data = cases(a.contexts, a.candidates, a.turns)
    ctx, hyps = [c for c, _ in data], [h for _, h in data]
    n_tok = sum(len(encode(tok, " ".join(c))) + len(c) for c in ctx) / len(ctx)
    ours = [s[FINAL] for s in ranker.score(ctx, hyps)]
    orig = [original_predict(model, tok, c, h) for c, h in data]
    diff = max(abs(x - y) for o, r in zip(ours, orig) for x, y in zip(o, r))
    print(f"{machine()}\nranker {a.size} {SIZES[a.size]}; {a.contexts} contexts x {a.candidates} candidates, "
          f"{a.turns} turns ({n_tok:.0f} context tokens on average); max |ours - original| = {diff:.2e}; {load()}")
    times = interleaved({"original": lambda: [original_predict(model, tok, c, h) for c, h in data],
                         "ours": lambda: ranker.score(ctx, hyps)}, a.rounds)
    rows = []
    for k, ts in times.items():
        med, lo, hi = summary([a.contexts / t for t in ts])
        print(f"  {k:9s} {med:8.1f} contexts/s [{lo:.1f}-{hi:.1f}]")
        rows.append(dict(path=k, contexts_per_s=med, min=lo, max=hi))
    med, lo, hi = summary(ratio_rounds(times["original"], times["ours"]))
    print(f"  speedup  {med:.2f}x [{lo:.2f}-{hi:.2f}] (per-round original/ours); {load()}")
    rows.append(dict(path="speedup", ratio=med, min=lo, max=hi, max_abs_diff=diff))
    write_json(a.json, "bench_rank", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
