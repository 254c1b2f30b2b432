"""Training throughput: our loop's step vs a plain transformers-Trainer-style step, same process,
same batches, interleaved (the CPU is shared, so only same-run ratios mean anything).

ours : gpt2_training.loss.LMLoss (chunked head + CE, unlabelled positions skipped on CPU)
       + the original's Adam on torch._foreach kernels (gpt2_training.optim), set_lr noam
plain: model(input_ids, labels=...) (transformers' loss over full logits) + torch AdamW(foreach)
       + clip_grad_norm_(1.0)
Reports real (non-pad) tokens/s, the ratio, and MFU against a measured matmul peak.

    python benchmarks/bench_train.py                 # small config + 117M, fp32 and bf16
    python benchmarks/bench_train.py --sizes small --steps 5
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gpt2_training.loss import LMLoss  # noqa: E402
from gpt2_training.optim import build_optimizer, optimizer_step  # noqa: E402
from gpt2_training.schedule import set_lr  # noqa: E402
from lsp_model.model import build_model, load_config, make_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def matmul_peak(dtype, n=2048, reps=5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def make_batches(n, bsz, seq, vocab, seed=0):
    """Right-padded rows, first third of each row unlabelled (context), like prepro features."""
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
        out.append((ids, pos, lab))
    return out


def flops_per_token(cfg, seq) -> float:
    n = sum([cfg.vocab_size * cfg.n_embd, cfg.n_layer * 12 * cfg.n_embd ** 2])  # head + blocks
    return 6 * n + 12 * cfg.n_layer * cfg.n_embd * seq


def run(cfg, dtype_name, steps, bsz, seq):
    amp = (torch.autocast("cpu", dtype=torch.bfloat16) if dtype_name == "bf16" else contextlib.nullcontext())
    torch.manual_seed(0)
    m_ours = build_model(cfg)
    m_plain = build_model(cfg)
    m_plain.load_state_dict(m_ours.state_dict())
    lm = LMLoss(m_ours)
    opt_ours = build_optimizer(m_ours, "lsp", 1e-5, False, torch.device("cpu"))
    opt_plain = torch.optim.AdamW(m_plain.parameters(), lr=1e-4, foreach=True)
    batches = make_batches(steps + 2, bsz, seq, cfg.vocab_size)

    def ours(b, i):
        ids, pos, lab = b
        with amp:
            loss, _ = lm(ids, pos, None, lab)
        loss.backward()
        set_lr(opt_ours, i, "noam", 1e-5, 16000, 0.1, cfg.n_embd, 1000000)
        optimizer_step(opt_ours, None)
        opt_ours.zero_grad(set_to_none=True)

    def plain(b, i):
        ids, pos, lab = b
        # transformers shifts internally: give it unshifted labels (-100 = ignore)
        hf_lab = torch.full_like(lab, -100)
        hf_lab[:, 1:] = lab[:, :-1].masked_fill(lab[:, :-1] == -1, -100)
        with amp:
            loss = m_plain(input_ids=ids, position_ids=pos, attention_mask=torch.ones_like(ids), labels=hf_lab).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m_plain.parameters(), 1.0)
        opt_plain.step()
        opt_plain.zero_grad(set_to_none=True)

    for i in range(2):  # warm-up: the first steps allocate optimizer state and caches
        ours(batches[i], i)
        plain(batches[i], i)
    t_ours = t_plain = 0.0
    for i, b in enumerate(batches[2:], start=2):  # interleaved: load spikes hit both
        t = time.perf_counter(); ours(b, i); t_ours += time.perf_counter() - t
        t = time.perf_counter(); plain(b, i); t_plain += time.perf_counter() - t
    real = sum(int((b[0] != 0).sum()) for b in batches[2:])
    total = steps * bsz * seq
    return real / t_ours, real / t_plain, total / t_ours, total / t_plain


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["small", "117M"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    a = ap.parse_args(argv)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print("matmul peak (2048^3): " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peaks.items()))
    print(f"{'config':8} {'prec':5} {'ours tok/s':>11} {'plain tok/s':>12} {'ours/plain':>10} "
          f"{'MFU ours':>9} {'MFU plain':>9}")
    base = {}
    for size in a.sizes:
        cfg = (make_config(n_layer=4, n_embd=256, n_head=4, n_positions=1024) if size == "small"
               else load_config(REPO / "configs" / size))
        fpt = flops_per_token(cfg, a.seq)
        for prec in a.precisions:
            ours, plain, ours_all, plain_all = run(cfg, prec, a.steps, a.batch, a.seq)
            # MFU counts every position the plain loop computes (padded tokens included)
            print(f"{size:8} {prec:5} {ours:11.0f} {plain:12.0f} {ours / plain:10.2f} "
                  f"{ours_all * fpt / peaks[prec]:9.1%} {plain_all * fpt / peaks[prec]:9.1%}")
            base[(size, prec)] = ours
        if "fp32" in a.precisions and "bf16" in a.precisions:
            print(f"{size:8} bf16/fp32 (ours): {base[(size, 'bf16')] / base[(size, 'fp32')]:.2f}x")


if __name__ == "__main__":
    main()
