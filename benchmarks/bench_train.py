"""Training throughput: our loop's update vs the plain transformers loop, same process, same
batches, interleaved rounds (the CPU may be shared: only same-round ratios mean much).

ours : gpt2_training.loss.LMLoss (chunked head + CE, unlabelled positions skipped on CPU) + the
       original's Adam (gpt2_training.optim, fused kernel), set_lr noam, low-precision weights cast
       once per update (gpt2_training.amp.UpdateCasts), as gpt2_training.loop
plain: model(input_ids, labels=...) (transformers' loss over full logits) + torch
       AdamW(fused=True) + clip_grad_norm_(1.0): what a user of transformers would write
Both accumulate gradients over --accum micro-batches per update, in fp32 and in bf16 autocast.
Reports real (non-pad) tokens/s (median [min-max] over rounds), the per-round ratios, and MFU
against the measured matmul peak of each dtype.

    python benchmarks/bench_train.py                      # 117M, fp32 (+ bf16 on CPUs with bf16 units), accum 8
    python benchmarks/bench_train.py --size small --rounds 2 --accum 2
    python benchmarks/bench_train.py --size small --precisions fp32 --deterministic   # its cost
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from common import interleaved, load, machine, ratio_rounds, summary, write_json  # noqa: E402
from gpt2_training.amp import UpdateCasts  # noqa: E402
from gpt2_training.determinism import deterministic_layer_norms  # noqa: E402
from gpt2_training.loss import LMLoss  # noqa: E402
from gpt2_training.optim import build_optimizer, optimizer_step  # noqa: E402
from gpt2_training.schedule import set_lr  # noqa: E402
from lsp_model.model import build_model, load_config, make_config  # noqa: E402


def matmul_peak(dtype, n=2048, reps=5, device="cpu") -> float:
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def make_batches(n, bsz, seq, vocab, seed=0, device="cpu"):
    """Right-padded rows of length seq/2..seq, the first third of each row unlabelled (context),
    like prepro features (chitchat micro-batches average ~78 tokens at seq 104)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        lens = torch.randint(seq // 2, seq + 1, (bsz,), generator=g)
        ids = torch.zeros(bsz, seq, dtype=torch.long)
        pos = torch.zeros_like(ids)
        lab = torch.full_like(ids, -1)
        for i, L in enumerate(lens.tolist()):
            t = torch.randint(1, vocab, (L + 1,), generator=g)
            ids[i, :L], pos[i, :L] = t[:L], torch.arange(L)
            lab[i, L // 3:L] = t[L // 3 + 1:L + 1]
        out.append(tuple(x.to(device) for x in (ids, pos, lab)))
    return out


def flops_per_token(cfg, seq) -> float:
    n = cfg.vocab_size * cfg.n_embd + cfg.n_layer * 12 * cfg.n_embd ** 2  # head + blocks
    return 6 * n + 12 * cfg.n_layer * cfg.n_embd * seq


def hf_labels(lab):
    """transformers shifts internally: unshifted labels, -100 = ignore."""
    out = torch.full_like(lab, -100)
    out[:, 1:] = lab[:, :-1].masked_fill(lab[:, :-1] == -1, -100)
    return out


def ours_update(model, cfg, optim="lsp", compile_model=False):
    lm = LMLoss(model)
    fwd = torch.compile(lm) if compile_model else lm
    opt = build_optimizer(model, optim, 1e-5, False, next(model.parameters()).device)
    step = [0]

    def update(batches, amp):
        with UpdateCasts(next(model.parameters()).device.type, amp is not contextlib.nullcontext):
            for ids, pos, lab in batches:
                with amp():
                    loss, _ = fwd(ids, pos, None, lab)
                loss.backward()
        set_lr(opt, step[0], "noam", 1e-5, 16000, 0.1, cfg.n_embd, 1000000)
        optimizer_step(opt, None)
        opt.zero_grad(set_to_none=True)
        step[0] += 1
    return update


def plain_update(model, compile_model=False):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    fwd = torch.compile(model) if compile_model else model

    def update(batches, amp):
        for ids, pos, lab in batches:
            with amp():
                loss = fwd(input_ids=ids, position_ids=pos, attention_mask=torch.ones_like(ids),
                           labels=hf_labels(lab)).loss
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return update


def amp_for(prec, device):
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)
    return (lambda: torch.autocast(torch.device(device).type, dtype=dt)) if dt else contextlib.nullcontext


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="117M", help="a configs/ folder, or 'small' (4 layers, 256 wide)")
    ap.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"],
                    help="default: fp32, and bf16 where the CPU has bf16 units (emulated bf16 is several times "
                         "slower: rounds would take most of an hour and measure nothing a user would run)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--accum", type=int, default=8, help="micro-batches per update")
    ap.add_argument("--batch", type=int, default=8, help="rows per micro-batch")
    ap.add_argument("--seq", type=int, default=104)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--deterministic", action="store_true",
                    help="also time ours with --deterministic (thread-count-independent LayerNorm grads)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.precisions is None:
        from lsp_io.cpu import has_bf16
        a.precisions = ["fp32", "bf16"] if has_bf16() else ["fp32"]
        if not has_bf16():
            print("bf16 not timed: this CPU has no bf16 units (AVX512-BF16/AMX); --precisions fp32 bf16 forces it")
    torch.set_num_threads(a.threads)
    cfg = (make_config(n_layer=4, n_embd=256, n_head=4, n_positions=1024) if a.size == "small"
           else load_config(REPO / "configs" / a.size))
    torch.manual_seed(0)
    base = build_model(cfg)
    fns, batches = {}, make_batches(a.accum, a.batch, a.seq, cfg.vocab_size)
    for prec in a.precisions:
        amp = amp_for(prec, "cpu")
        for name in ("ours", "plain") + (("ours det",) if a.deterministic else ()):
            m = build_model(cfg)
            m.load_state_dict(base.state_dict())
            if name == "ours det":
                deterministic_layer_norms(m)
            upd = plain_update(m) if name == "plain" else ours_update(m, cfg)
            fns[(name, prec)] = (lambda bs=batches, u=upd, amp=amp: u(bs, amp))
    # warm-up, one micro-batch per update: optimizer state, allocator, caches
    interleaved({k: (lambda f=f: f(batches[:1])) for k, f in fns.items()}, 1)
    t = interleaved(fns, a.rounds)
    real = sum(int((b[0] != 0).sum()) for b in batches)
    peaks = {p: matmul_peak({"fp32": torch.float32, "bf16": torch.bfloat16}[p]) for p in a.precisions}
    fpt = flops_per_token(cfg, a.seq)
    print(f"training update, {a.size}, {a.accum} x {a.batch} rows x <= {a.seq} tokens ({real} real tokens), "
          f"{a.rounds} rounds; {machine()}; {load()}")
    print("  matmul peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    rows = []
    for (name, prec), xs in t.items():
        tok = [real / x for x in xs]
        med, lo, hi = summary(tok)
        r = summary(ratio_rounds(t[("plain", prec)], xs))
        mfu = med * fpt / peaks[prec]
        print(f"  {name:8} {prec:5} {med:8.0f} tok/s [{lo:.0f}-{hi:.0f}]  x{r[0]:.2f} of plain [{r[1]:.2f}-{r[2]:.2f}]"
              f"  MFU {mfu:.1%}")
        rows.append(dict(name=name, precision=prec, tokens_per_s=med, lo=lo, hi=hi, ratio_vs_plain=r[0],
                         ratio_lo=r[1], ratio_hi=r[2], mfu=mfu))
    for prec in a.precisions if a.deterministic else ():
        r = summary(ratio_rounds(t[("ours det", prec)], t[("ours", prec)]))
        print(f"  --deterministic {prec}: x{r[0]:.2f} the time of ours [{r[1]:.2f}-{r[2]:.2f}]")
        rows.append(dict(name="ours det/ours", precision=prec, ratio=r[0], lo=r[1], hi=r[2]))
    if {"fp32", "bf16"} <= set(a.precisions):
        for name in ("ours", "plain"):
            r = summary(ratio_rounds(t[(name, "fp32")], t[(name, "bf16")]))
            print(f"  {name:5} bf16/fp32: x{r[0]:.2f} [{r[1]:.2f}-{r[2]:.2f}]")
            rows.append(dict(name=name, precision="bf16/fp32", ratio=r[0], lo=r[1], hi=r[2]))
    write_json(a.json, "train", rows)


if __name__ == "__main__":
    main()
