"""LoRA vs full fine-tuning: peak memory and update time of LSP_train's update, same process,
interleaved rounds, fp32 on CPU; plus the 762M sizes on paper (parameters and optimizer state).

Each round builds, for each mode, the model from the same base weights (LoRA: peft's layers on
the frozen base, gpt2_training.lora's way), runs one warm-up update (Adam's state exists after
it), then times one update (forward + backward of --accum micro-batches, the original's Adam)
and reads the process's peak resident memory during that update (Linux VmHWM, reset through
/proc/self/clear_refs just before) minus the resident memory before the mode was built. Large
allocations are made to go back to the system when freed (mallopt), so one mode's leftovers do
not hide the next one's peak.

    python benchmarks/bench_lora.py                  # 117M, r 8, 3 rounds
    python benchmarks/bench_lora.py --size small --rounds 2
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_train import make_batches, ours_update  # noqa: E402
from common import load, machine, ratio_rounds, summary, write_json  # noqa: E402
from lsp_model.checkpoint import load_weights  # noqa: E402
from lsp_model.lora import DEFAULT_TARGETS, add_lora  # noqa: E402
from lsp_model.model import build_model, load_config, make_config  # noqa: E402

LIBC = ctypes.CDLL("libc.so.6")
GIB = 2 ** 30


def rss(field: str = "VmRSS") -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def release() -> None:
    gc.collect()
    LIBC.malloc_trim(0)


def lora_params(cfg, r: int, targets=DEFAULT_TARGETS) -> int:
    """LoRA's trainable parameters: r * (fan_in + fan_out) for every adapted Conv1D."""
    e, inner = cfg.n_embd, cfg.n_inner or 4 * cfg.n_embd
    shapes = {"c_attn": [(e, 3 * e)], "c_proj": [(e, e), (inner, e)], "c_fc": [(e, inner)]}
    return cfg.n_layer * sum(r * (i + o) for t in targets for i, o in shapes[t])


def n_params(cfg) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(cfg).parameters())


def paper(cfg, r: int) -> dict:
    """Bytes that do not depend on the batch: weights, gradients and Adam's two moments (fp32;
    the original's fp16 path holds the same 16 bytes per trained parameter: fp16 weights and
    grads + fp32 master weights + two fp32 moments)."""
    p, t = n_params(cfg), lora_params(cfg, r)
    return {"params": p, "lora_params": t, "full_bytes": 16 * p, "lora_bytes": 4 * p + 16 * t}


def run_mode(mode: str, cfg, base_sd: dict, batches, r: int) -> tuple[float, int]:
    """(seconds of one timed update, peak bytes above the resident memory before building)."""
    release()
    before = rss()
    model = build_model(cfg)
    load_weights(model, base_sd)
    if mode == "lora":
        add_lora(model, r, 2 * r, 0.0)
    model.train()
    update = ours_update(model, cfg)
    update(batches, contextlib.nullcontext)  # warm-up: Adam's state exists after it
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    t = time.perf_counter()
    update(batches, contextlib.nullcontext)
    seconds = time.perf_counter() - t
    peak = rss("VmHWM") - before
    del model, update
    release()
    return seconds, peak


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="117M", help="a configs/ folder, or 'small' (4 layers, 256 wide)")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--accum", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    LIBC.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD fixed at 1 MiB: big tensors are unmapped when freed
    torch.set_num_threads(args.threads)
    cfg = (make_config(n_layer=4, n_embd=256, n_head=4) if args.size == "small"
           else load_config(REPO / "configs" / args.size))
    torch.manual_seed(0)
    base_sd = {k: v.clone() for k, v in build_model(cfg).state_dict().items()}
    batches = make_batches(args.accum, args.batch, args.seq, cfg.vocab_size)
    print(f"# {machine()}; {load()} at start")
    print(f"# {args.size}: {args.accum} x {args.batch} x {args.seq} tokens per update, fp32, LoRA r={args.r} "
          f"alpha={2 * args.r} on {','.join(DEFAULT_TARGETS)}")
    res = {m: ([], []) for m in ("full", "lora")}
    for _ in range(args.rounds):
        for mode in res:
            s, peak = run_mode(mode, cfg, base_sd, batches, args.r)
            res[mode][0].append(s)
            res[mode][1].append(peak)
    rows = []
    for mode, (secs, peaks) in res.items():
        (ms, lo, hi), (pm, plo, phi) = summary(secs), summary([p / GIB for p in peaks])
        print(f"{mode:5s} update {ms:.3f} s [{lo:.3f}-{hi:.3f}]  peak memory {pm:.2f} GiB [{plo:.2f}-{phi:.2f}]")
        rows.append(dict(mode=mode, update_s=ms, update_min=lo, update_max=hi, peak_gib=pm))
    t_ratio = summary(ratio_rounds(res["lora"][0], res["full"][0]))
    m_ratio = summary(ratio_rounds(res["lora"][1], res["full"][1]))
    print(f"lora/full per round: update time {t_ratio[0]:.2f}x [{t_ratio[1]:.2f}-{t_ratio[2]:.2f}], "
          f"peak memory {m_ratio[0]:.2f}x [{m_ratio[1]:.2f}-{m_ratio[2]:.2f}]")
    for name, c in (("117M", load_config(REPO / "configs" / "117M")), ("762M", load_config(REPO / "configs" / "762M"))):
        pp = paper(c, args.r)
        print(f"on paper {name}: {pp['params'] / 1e6:.0f}M params, "
              f"LoRA r={args.r} trains {pp['lora_params'] / 1e6:.2f}M; "
              f"weights+grads+Adam fp32: full {pp['full_bytes'] / GIB:.1f} GiB, LoRA {pp['lora_bytes'] / GIB:.2f} GiB "
              f"(+ activations)")
        rows.append(dict(mode=f"paper_{name}", **pp))
    print(f"# {load()} at end")
    write_json(args.json, "bench_lora", rows)


if __name__ == "__main__":
    main()
