#!/usr/bin/env bash
# One-GPU check, at most 5 minutes: training (117M/345M, bf16/fp16, eager/compile, lsp Adam/AdamW),
# a 1-GPU NCCL DDP run, decoding at batch 64; prints one table. See benchmarks/gpu_check.py.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$(mktemp -d)}"
timeout 60 torchrun --standalone --nproc_per_node 1 benchmarks/gpu_check.py ddp --json "$out/gpu_ddp.json"
timeout 220 python benchmarks/gpu_check.py main --budget_s 150 --json "$out/gpu_main.json"
python benchmarks/gpu_check.py table "$out/gpu_main.json" "$out/gpu_ddp.json" | tee "$out/gpu_check.md"
