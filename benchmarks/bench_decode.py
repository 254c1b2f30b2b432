"""Decoding speed: our generate() (lsp_model.generate) against transformers' model.generate,
greedy and beam 4, batch 1 and 32, same model, same left-padded contexts, outputs checked equal.
Interleaved rounds in one process; tokens/s median [min-max] and per-round ratios.

    python benchmarks/bench_decode.py                          # 117M (random weights), CPU
    python benchmarks/bench_decode.py --config configs/117M --device cuda --batches 1 64
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from common import interleaved, load, machine, ratio_rounds, summary, write_json  # noqa: E402
from lsp_model.generate import generate, left_pad, make_gen_config  # noqa: E402
from lsp_model.model import build_model, load_config  # noqa: E402

EOS = 50256


def hf_generate(model, contexts, n_new, beams):
    """transformers' generate on the same left-padded batch (it derives positions from the mask)."""
    ids, mask = left_pad(contexts, EOS)
    dev = next(model.parameters()).device
    out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), do_sample=False, num_beams=beams,
                         min_new_tokens=n_new, max_new_tokens=n_new, pad_token_id=EOS, eos_token_id=EOS,
                         length_penalty=1.0, num_return_sequences=1)
    return out[:, ids.shape[1]:].tolist()


def ours_generate(model, contexts, n_new, beams):
    cfg = make_gen_config("greedy" if beams == 1 else None, num_beams=beams, min_new_tokens=n_new,
                          max_new_tokens=n_new)
    return [h[0]["ids"] for h in generate(model, contexts, cfg, EOS)]


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs" / "117M"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--ctx_len", type=int, default=48)
    p.add_argument("--new_tokens", type=int, default=16)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = load_config(a.config)
    model = build_model(cfg).to(a.device).eval()
    g = torch.Generator().manual_seed(0)
    ctxs = [torch.randint(0, 50000, (a.ctx_len - (i % 8),), generator=g).tolist() + [EOS]
            for i in range(max(a.batches))]
    print(f"decoding, {cfg.n_layer}x{cfg.n_embd} on {a.device}, contexts {a.ctx_len - 7}-{a.ctx_len} tokens, "
          f"{a.new_tokens} new tokens, {a.rounds} rounds; {machine()}")
    rows, fns, outs = [], {}, {}
    for beams in a.beams:
        for bs in a.batches:
            for name, fn in (("ours", ours_generate), ("transformers", hf_generate)):
                def run(fn=fn, key=(name, beams, bs), bs=bs, beams=beams):
                    with torch.no_grad():
                        outs[key] = fn(model, ctxs[:bs], a.new_tokens, beams)
                    _sync(a.device)
                fns[(name, beams, bs)] = run
    interleaved(fns, 1)  # warm-up
    t = interleaved(fns, a.rounds)
    print(f"  {load()}")
    for beams in a.beams:
        for bs in a.batches:
            same = outs[("ours", beams, bs)] == outs[("transformers", beams, bs)]
            for name in ("ours", "transformers"):
                xs = t[(name, beams, bs)]
                med, lo, hi = summary([bs * a.new_tokens / x for x in xs])
                r = summary(ratio_rounds(t[("transformers", beams, bs)], xs))
                mode = "greedy" if beams == 1 else f"beam{beams}"
                print(f"  {mode:6} batch {bs:3d} {name:12} {med:8.1f} tok/s [{lo:.1f}-{hi:.1f}]  "
                      f"x{r[0]:.2f} of transformers [{r[1]:.2f}-{r[2]:.2f}]  outputs equal: {same}")
                rows.append(dict(name=name, mode=mode, batch=bs, tokens_per_s=med, lo=lo, hi=hi,
                                 ratio_vs_transformers=r[0], outputs_equal=same))
    write_json(a.json, "decode", rows)


if __name__ == "__main__":
    main()
