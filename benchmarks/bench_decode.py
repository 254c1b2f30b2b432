"""Decoding speed: tokens/s of the KV-cache loop vs a no-cache loop, batch 1 and 32, and the
cost of MMI reranking per context. Everything runs in one process on the same random model
(timings on a shared CPU fluctuate: compare the ratios).

    python benchmarks/bench_decode.py                       # 6 x 384 GPT-2, CPU
    python benchmarks/bench_decode.py --config configs/117M --device cuda
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsp_model.generate import generate, left_pad, make_gen_config, positions_from_mask  # noqa: E402
from lsp_model.mmi import rerank_batch  # noqa: E402
from lsp_model.model import build_model, load_config, make_config  # noqa: E402

EOS = 50256


@torch.no_grad()
def greedy_no_cache(model, contexts, n_new):
    """The baseline: recompute the whole (left-padded) sequence for every new token."""
    ids, mask = left_pad(contexts, EOS)
    ids, mask = ids.to(model.device), mask.to(model.device)
    for _ in range(n_new):
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask), use_cache=False,
                    logits_to_keep=1)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        ids, mask = torch.cat([ids, tok], 1), torch.cat([mask, torch.ones_like(tok)], 1)
    return ids[:, -n_new:].tolist()


def timed(fn, reps):
    best = float("inf")
    for _ in range(reps):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="config.json/folder (default: 6 layers x 384, GPT-2 vocabulary)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--ctx_len", type=int, default=48)
    p.add_argument("--new_tokens", type=int, default=32)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--candidates", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = load_config(a.config) if a.config else make_config(n_layer=6, n_embd=384, n_head=6)
    model = build_model(cfg).to(a.device).eval()
    g = torch.Generator().manual_seed(0)
    ctxs = [torch.randint(0, 50000, (a.ctx_len - (i % 8),), generator=g).tolist() + [EOS] for i in range(32)]
    gcfg = make_gen_config("greedy", min_new_tokens=a.new_tokens, max_new_tokens=a.new_tokens)
    print(f"model {cfg.n_layer}x{cfg.n_embd} vocab {cfg.vocab_size} on {a.device}, {torch.get_num_threads()} threads; "
          f"contexts {a.ctx_len - 7}-{a.ctx_len} tokens, {a.new_tokens} new tokens (greedy)")
    rows = {}
    for bs in (1, 32):
        batch = ctxs[:bs]
        t_c, cached = timed(lambda: generate(model, batch, gcfg, EOS), a.reps)
        t_n, plain = timed(lambda: greedy_no_cache(model, batch, a.new_tokens), a.reps)
        same = [h[0]["ids"] for h in cached] == plain
        rows[bs] = (t_c, t_n)
        n_tok = bs * a.new_tokens
        print(f"batch {bs:2d}: KV cache {n_tok / t_c:8.1f} tok/s   no cache {n_tok / t_n:8.1f} tok/s   "
              f"speed-up x{t_n / t_c:.2f}   same tokens: {same}")
    print(f"batching: batch 32 vs batch 1 with the cache x{(32 * rows[1][0]) / rows[32][0]:.2f} tokens/s")
    # MMI: sample candidates, then score them all with a reverse model of the same size
    scfg = make_gen_config("topk", num_return_sequences=a.candidates, min_new_tokens=a.new_tokens // 2,
                           max_new_tokens=a.new_tokens)
    batch = ctxs[:8]
    t_s, hyps = timed(lambda: generate(model, batch, scfg, EOS), 1)
    turns = [[c[:-1]] for c in batch]
    t_r, _ = timed(lambda: rerank_batch(model, turns, hyps, EOS, batch_size=32), a.reps)
    t_g, _ = timed(lambda: generate(model, batch, gcfg, EOS), 1)
    print(f"MMI, {a.candidates} sampled candidates per context: sampling {1000 * t_s / len(batch):.0f} ms/ctx, "
          f"reverse scoring {1000 * t_r / len(batch):.0f} ms/ctx; total x{(t_s + t_r) / t_g:.2f} the time of "
          f"batched greedy ({1000 * t_g / len(batch):.0f} ms/ctx)")


if __name__ == "__main__":
    main()
