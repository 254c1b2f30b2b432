"""rank.py's commands: score a file of candidates, or train a ranker (lsp_rank.train)."""
from __future__ import annotations

import argparse
import json
import sys

from lsp_io.cli import prog_name
from lsp_model.generation_args import add_ranker_args

USAGE = """Rank candidate replies with a DialogRPT ranker (or train one). See docs/ranking.md.

    python rank.py --ranker updown.pth --input cands.jsonl --output scores.jsonl
    python rank.py --ranker ensemble.yml --input cands.tsv --output scores.jsonl --max_cxt_turn 2
    python rank.py train --init models/small --pairs pairs.jsonl --output_dir rankers/mine
    python rank.py pairs --input feedback.jsonl --output pairs.jsonl       (= prepare_data.py feedback)

Input lines: {"context": [turn, ...], "hyps": [reply, ...]} (JSONL) or context<TAB>hyp1<TAB>...
(TSV, turns joined by " EOS "). Output lines: {"scores": [...]}, or for an ensemble .yml
{"scores": {"<name>": [...], ..., "final": [...]}}.
"""

TRAIN_USAGE = """Train a DialogRPT ranker on (context, better reply, worse reply) pairs with DialogRPT's
pairwise loss and LSP_train's optimizer, schedules and autocast (lsp_rank/train.py; docs/ranking.md).
Pairs: JSONL {"context": [turn, ...], "pos": "...", "neg": "..."}. Writes OUT/ranker.pth + config.json
(and OUT/best.pth with --eval_pairs) and OUT/train_log.jsonl.
"""


def score_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog_name("rank.py"), description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--batch_size", type=int, default=32, help="sequences per forward pass")
    p.add_argument("--device", help="default: cuda if available, else cpu")
    add_ranker_args(p, required=True, rerank=False)
    return p


def check_positive(p: argparse.ArgumentParser, args, *names) -> None:
    for n in names:
        v = getattr(args, n, None)
        if v is not None and v < 1:
            p.error(f"--{n} must be >= 1")


def train_parser() -> argparse.ArgumentParser:
    from lsp_io.flags import parse_bool
    p = argparse.ArgumentParser(prog=prog_name("rank.py") + " train", description=TRAIN_USAGE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", required=True, help="a ranker (.pth, folder) or a DialoGPT .pkl/folder to start from")
    p.add_argument("--pairs", required=True, help="training pairs (JSONL)")
    p.add_argument("--eval_pairs", help="held-out pairs (JSONL): accuracy logged, best.pth kept")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_optim_steps", type=int, default=1000)
    p.add_argument("--train_batch_size", type=int, default=16, help="pairs per update")
    p.add_argument("--learning_rate", type=float, default=3e-5)
    p.add_argument("--lr_schedule", default="None", choices=["noam", "noamwd", "BERT", "None"])
    p.add_argument("--warmup_steps", type=int, default=100)
    p.add_argument("--warmup_proportion", type=float, default=0.1)
    p.add_argument("--optim", default="lsp", choices=["lsp", "adamw"])
    p.add_argument("--max_grad_norm", type=float, default=1.0)
    p.add_argument("--fp16", type=parse_bool, default=False, help="fp16 autocast + loss scaling (GPU)")
    p.add_argument("--bf16", type=parse_bool, default=False, help="bf16 autocast")
    p.add_argument("--max_cxt_turn", type=int)
    p.add_argument("--valid_step", type=int, default=100, help="evaluate and save every N updates")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device")
    return p


def train_main(argv) -> int:
    p = train_parser()
    args = p.parse_args(argv)
    check_positive(p, args, "num_optim_steps", "train_batch_size", "valid_step", "max_cxt_turn")
    from lsp_model.checkpoint import CheckpointError

    from .train import train
    try:
        res = train(args)
    except (ValueError, OSError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {res['ranker']}" + (f" (best held-out accuracy {res['best_eval_acc']:.3f} in best.pth)"
                                      if res["best_eval_acc"] is not None else ""), file=sys.stderr)
    return 0


CHUNK = 2048  # contexts per scoring call: bounded memory, progress between them


def score_main(argv) -> int:
    p = score_parser()
    args = p.parse_args(argv)
    check_positive(p, args, "batch_size", "max_cxt_turn")
    from lsp_io.cpu import use_huge_pages
    use_huge_pages()  # before torch
    from lsp_io.atomic import atomic_file
    from lsp_model.checkpoint import CheckpointError
    from lsp_model.decoding import default_device
    from .inputs import read_cases
    from .ranker import FINAL, load_ranker
    try:
        cases = read_cases(args.input)
        ranker = load_ranker(args.ranker, args.ranker_dtype, args.device or default_device(), args.batch_size)
    except (ValueError, OSError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with atomic_file(args.output, "w") as f:
        for a in range(0, len(cases), CHUNK):
            chunk = cases[a:a + CHUNK]
            for s in ranker.score([c.turns for c in chunk], [c.hyps for c in chunk], args.max_cxt_turn):
                f.write(json.dumps({"scores": s[FINAL] if ranker.single else s}) + "\n")
    print(f"ranked {sum(len(c.hyps) for c in cases)} candidates of {len(cases)} contexts into {args.output}",
          file=sys.stderr)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        return train_main(argv[1:])
    if argv[:1] == ["pairs"]:
        from .feedback import main as feedback_main
        return feedback_main(argv[1:])
    return score_main(argv)
