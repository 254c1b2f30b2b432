"""One-GPU check (benchmarks/gpu_check.sh runs it, <= 5 minutes): training updates at 117M and
345M in bf16 and fp16 (tokens/s and MFU against the measured matmul peak; eager and
torch.compile; the original's Adam and fused AdamW), a 1-GPU NCCL DDP run, and decoding at
batch 64 against transformers' generate. The same code paths as the CPU benchmarks, on cuda.

    python benchmarks/gpu_check.py main --json main.json
    torchrun --standalone --nproc_per_node 1 benchmarks/gpu_check.py ddp --json ddp.json
    python benchmarks/gpu_check.py table main.json ddp.json
    python benchmarks/gpu_check.py project      # no GPU needed: projected figures (docs/gpu.md)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_decode import hf_generate, ours_generate  # noqa: E402
from bench_train import flops_per_token, make_batches, matmul_peak  # noqa: E402
from common import machine, write_json  # noqa: E402
from gpt2_training.loss import LMLoss  # noqa: E402
from gpt2_training.optim import LossScaler, build_optimizer, optimizer_step  # noqa: E402
from lsp_model.model import build_model, load_config  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# (size, precision, optimizer, compiled): every eager combination, compile for the default path
CONFIGS = [(s, p, o, False) for s in ("117M", "345M") for p in ("bf16", "fp16") for o in ("lsp", "adamw")] + \
          [(s, "bf16", "lsp", True) for s in ("117M", "345M")]


def train_update(model, prec, optim, compiled, device):
    """gpt2_training.loop's update: LMLoss under autocast, loss-scaled backward for fp16, optimizer_step."""
    lm = LMLoss(model)
    fwd = torch.compile(lm) if compiled else lm
    opt = build_optimizer(model, optim, 1e-5, prec == "fp16", device)
    scaler = LossScaler() if prec == "fp16" else None

    def update(batch):
        ids, pos, lab = batch
        scale = scaler.cur_scale if scaler is not None else 1.0
        with torch.autocast(device.type, dtype=DTYPES[prec]):
            loss, _ = fwd(ids, pos, None, lab, grad_scale=scale)
        (loss.float() * scale).backward()
        optimizer_step(opt, scaler)
        opt.zero_grad(set_to_none=True)
        return loss
    return update


def time_updates(update, batches, warm=3):
    for b in batches[:warm]:
        update(b)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for b in batches[warm:]:
        loss = update(b)
    torch.cuda.synchronize()
    return time.perf_counter() - t, float(loss.detach())


def main_rows(budget_s: float, bsz=16, seq=128, steps=6):
    dev = torch.device("cuda")
    t0 = time.perf_counter()
    peaks = {p: matmul_peak(dt, n=8192, reps=20, device="cuda") for p, dt in DTYPES.items()}
    rows = [dict(kind="peak", name=f"matmul {p}", value=f"{v / 1e12:.0f} TFLOP/s") for p, v in peaks.items()]
    for size, prec, optim, compiled in CONFIGS:
        name = f"train {size} {prec} {optim}{' compile' if compiled else ''}"
        if time.perf_counter() - t0 > budget_s:
            rows.append(dict(kind="train", name=name, value="skipped (time budget)"))
            continue
        cfg = load_config(REPO / "configs" / size)
        torch.manual_seed(0)
        model = build_model(cfg).to(dev)
        batches = make_batches(3 + steps, bsz, seq, cfg.vocab_size, device=dev)
        dt, loss = time_updates(train_update(model, prec, optim, compiled, dev), batches)
        real = sum(int((b[0] != 0).sum()) for b in batches[3:])
        tok = real / dt
        rows.append(dict(kind="train", name=name, value=f"{tok:,.0f} tok/s", tokens_per_s=tok,
                         mfu=tok * flops_per_token(cfg, seq) / peaks[prec], loss=loss))
        del model, batches
        torch.cuda.empty_cache()
    rows += decode_rows(dev)
    return rows


def decode_rows(dev, bs=64, n_new=32):
    cfg = load_config(REPO / "configs" / "117M")
    model = build_model(cfg).to(dev).eval()
    g = torch.Generator().manual_seed(0)
    ctxs = [torch.randint(0, 50000, (48 - i % 8,), generator=g).tolist() + [50256] for i in range(bs)]
    out, times = {}, {}
    for name, fn in (("ours", ours_generate), ("transformers", hf_generate)):
        with torch.no_grad():
            fn(model, ctxs, n_new, 1)  # warm-up
            torch.cuda.synchronize()
            t = time.perf_counter()
            out[name] = fn(model, ctxs, n_new, 1)
            torch.cuda.synchronize()
            times[name] = time.perf_counter() - t
    same = out["ours"] == out["transformers"]
    return [dict(kind="decode", name=f"decode 117M greedy batch {bs} {k}", value=f"{bs * n_new / v:,.0f} tok/s",
                 tokens_per_s=bs * n_new / v, outputs_equal=same) for k, v in times.items()]


def ddp_rows(bsz=16, seq=128, steps=5):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("nccl")
    rank = dist.get_rank()
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.cuda.set_device(dev)
    cfg = load_config(REPO / "configs" / "117M")
    torch.manual_seed(0)
    model = build_model(cfg).to(dev)
    ddp = DDP(LMLoss(model), device_ids=[dev.index])
    opt = build_optimizer(model, "lsp", 1e-5, False, dev)
    batches = make_batches(2 + steps, bsz, seq, cfg.vocab_size, device=dev)

    def update(b):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = ddp(*b[:2], None, b[2])
        loss.backward()
        optimizer_step(opt, None)
        opt.zero_grad(set_to_none=True)
        return loss
    dt, loss = time_updates(update, batches, warm=2)
    real = sum(int((b[0] != 0).sum()) for b in batches[2:])
    ok = bool(torch.isfinite(torch.tensor(loss)))
    world = dist.get_world_size()
    dist.destroy_process_group()
    if rank != 0:
        return []
    return [dict(kind="ddp", name=f"DDP nccl world {world} 117M bf16",
                 value=f"{real / dt:,.0f} tok/s, loss finite: {ok}", tokens_per_s=real / dt)]


def table(paths):
    rows, head = [], None
    for p in paths:
        if Path(p).is_file():
            d = json.loads(Path(p).read_text())
            head = head or f"{d['date']} {d['machine']}"
            rows += d["rows"]
        else:
            rows.append(dict(kind="missing", name=p, value="no output (failed or timed out)"))
    print(f"gpu_check: {head}")
    print(f"| {'check':38} | {'result':32} | {'MFU':>6} |")
    print(f"|{'-' * 40}|{'-' * 34}|{'-' * 8}|")
    for r in rows:
        extra = f"{r['mfu']:.1%}" if "mfu" in r else ("equal" if r.get("outputs_equal") else
                                                        ("DIFFER" if "outputs_equal" in r else ""))
        print(f"| {r['name']:38} | {r['value']:32} | {extra:>6} |")


H100_BF16_PEAK = 989e12  # H100 SXM dense bf16 tensor-core FLOP/s (NVIDIA's datasheet; fp16 the same)


def project(mfu: float = 0.40, peak: float = H100_BF16_PEAK, seq: int = 128) -> None:
    """Projected training tokens/s on one H100 at a given MFU: peak x MFU / FLOPs per token (the
    same count the measured MFU uses). A projection, not a measurement: gpu_check.sh replaces it."""
    print(f"PROJECTION (no GPU run): one H100 SXM, {peak / 1e12:.0f} TFLOP/s bf16 peak, {mfu:.0%} MFU, "
          f"{seq}-token rows")
    for size in ("117M", "345M", "762M"):
        fpt = flops_per_token(load_config(REPO / "configs" / size), seq)
        print(f"  {size}: {fpt / 1e9:.2f} GFLOP/token -> {peak * mfu / fpt:,.0f} tokens/s")


def cli(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["main", "ddp", "table", "project"])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--json")
    ap.add_argument("--budget_s", type=float, default=150, help="stop starting new training configs after this")
    a = ap.parse_args(argv)
    if a.what == "table":
        return table(a.paths)
    if a.what == "project":
        return project()
    if not torch.cuda.is_available():
        sys.exit("gpu_check.py: no CUDA device")
    print(machine(), torch.cuda.get_device_name())
    rows = main_rows(a.budget_s) if a.what == "main" else ddp_rows()
    if rows:
        write_json(a.json, f"gpu_{a.what}", rows)


if __name__ == "__main__":
    cli()
