"""Decoding speed: our generate() (lsp_model.generate) against transformers' model.generate,
greedy, sampling (top-k 10) and beam 4, batch 1 and 32, same model, same left-padded contexts,
every reply forced to `--new_tokens`. Greedy and beam outputs are checked equal; sampled ones
cannot be (each side draws from its own random stream). Interleaved rounds in one process;
tokens/s median [min-max], per-round ratios median [min-max], and the load average.

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


# mode -> the settings both sides get (top_k 0 is "off" in both)
MODES = {"greedy": dict(do_sample=False, num_beams=1),
         "sample": dict(do_sample=True, num_beams=1, top_k=10, top_p=1.0, temperature=1.0),
         "beam4": dict(do_sample=False, num_beams=4, length_penalty=1.0)}


def hf_generate(model, contexts, n_new, mode):
    """transformers' generate on the same left-padded batch (it derives positions from the mask)."""
    ids, mask = left_pad(contexts, EOS)
    dev = next(model.parameters()).device
    out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), min_new_tokens=n_new,
                         max_new_tokens=n_new, pad_token_id=EOS, eos_token_id=EOS, num_return_sequences=1,
                         **MODES[mode])
    return out[:, ids.shape[1]:].tolist()


def ours_generate(model, contexts, n_new, mode):
    cfg = make_gen_config(min_new_tokens=n_new, max_new_tokens=n_new, **MODES[mode])
    return [h[0]["ids"] for h in generate(model, contexts, cfg, EOS)]


def weights(model) -> list:
    """Every weight tensor once (the tied embedding is the head too)."""
    return list({w.data_ptr(): w for w in model.parameters()}.values())


def read_weights(model, device, times: int = 5) -> None:
    """Read every weight once per time (a sum over each tensor): no step that multiplies by all
    the weights, as a batch-1 step does, can take less time."""
    ws = weights(model)
    for _ in range(times):
        for w in ws:
            w.sum()
    _sync(device)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs" / "117M"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--ctx_len", type=int, default=48)
    p.add_argument("--new_tokens", type=int, default=32)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES))
    p.add_argument("--rounds", type=int, default=3)
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
          f"{a.new_tokens} new tokens, {a.rounds} rounds; {machine()}; before: {load()}")
    rows, fns, outs = [], {}, {}
    for mode in a.modes:
        for bs in a.batches:
            for name, fn in (("ours", ours_generate), ("transformers", hf_generate)):
                def run(n_new=a.new_tokens, fn=fn, key=(name, mode, bs), bs=bs, mode=mode):
                    with torch.no_grad():
                        outs[key] = fn(model, ctxs[:bs], n_new, mode)
                    _sync(a.device)
                fns[(name, mode, bs)] = run
    # the floor of a batch-1 step, in the same rounds: reading the weights (5 times per round)
    fns[("weights", "read", 0)] = lambda n_new=None: read_weights(model, a.device)
    # warm-up, a quarter of the tokens: first-call costs (allocator, the head's copy and its forms'
    # trials, which greedy and sampling at one batch size share) without a whole extra round
    warm = max(2, a.new_tokens // 4)
    interleaved({k: (lambda f=f: f(warm)) for k, f in fns.items()}, 1)
    t = interleaved(fns, a.rounds)
    print(f"  after: {load()}")
    floor = summary([x / 5 for x in t.pop(("weights", "read", 0))])
    mb = sum(w.numel() * w.element_size() for w in weights(model)) / 1e6
    print(f"  reading every weight once ({mb:,.0f} MB, the floor of a batch-1 step): {1e3 * floor[0]:.1f} ms "
          f"[{1e3 * floor[1]:.1f}-{1e3 * floor[2]:.1f}], {mb / 1e3 / floor[0]:.1f} GB/s")
    for mode in a.modes:
        for bs in a.batches:
            # sampled replies come from different random streams: only their lengths can agree
            same = None if mode == "sample" else outs[("ours", mode, bs)] == outs[("transformers", mode, bs)]
            for name in ("ours", "transformers"):
                xs = t[(name, mode, bs)]
                med, lo, hi = summary([bs * a.new_tokens / x for x in xs])
                r = summary(ratio_rounds(t[("transformers", mode, bs)], xs))
                print(f"  {mode:6} batch {bs:3d} {name:12} {med:8.1f} tok/s [{lo:.1f}-{hi:.1f}]  "
                      f"x{r[0]:.2f} of transformers [{r[1]:.2f}-{r[2]:.2f}]  "
                      f"outputs equal: {'n/a (sampled)' if same is None else same}")
                rows.append(dict(name=name, mode=mode, batch=bs, new_tokens=a.new_tokens, tokens_per_s=med, lo=lo,
                                 hi=hi, ratio_vs_transformers=r[0], ratio_lo=r[1], ratio_hi=r[2], outputs_equal=same))
                if bs == 1:
                    ms = summary([1e3 * x / a.new_tokens for x in xs])
                    print(f"  {'':6} {'':9} {'':12} {ms[0]:8.1f} ms a token, the prompt's prefill included "
                          f"[{ms[1]:.1f}-{ms[2]:.1f}]: {ms[0] / 1e3 / floor[0]:.2f}x the weight read")
                    rows[-1] |= dict(ms_per_token=ms[0], weight_read_ms=1e3 * floor[0],
                                     weight_read_lo=1e3 * floor[1], weight_read_hi=1e3 * floor[2])
    write_json(a.json, "decode", rows)


if __name__ == "__main__":
    main()
