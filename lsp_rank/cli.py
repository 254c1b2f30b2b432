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
pairwise loss, through LSP_train's own loop (optimizers, schedules, fp16/bf16, gradient
accumulation, checkpoints, exact resume, SIGINT/SIGTERM save-and-stop; lsp_rank/train.py,
docs/ranking.md). Pairs: JSONL {"context": [turn, ...], "pos": "...", "neg": "..."}.
Writes the run folder OUT/GPT2.*/ (checkpoints every --valid_step, logs, lock) and, at the end,
OUT/ranker.pth + config.json (and OUT/best.pth with --eval_pairs).
Resume an interrupted run with the same flags plus --resume_from_checkpoint last.
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


# LSP_train's flags that rank.py train takes as they are (gpt2_training/args.py owns them), and
# rank.py's defaults for them where a ranker wants others
LSP_FLAGS = ("output_dir", "num_optim_steps", "train_batch_size", "gradient_accumulation_steps", "learning_rate",
             "lr_schedule", "warmup_steps", "warmup_proportion", "optim", "fp16", "bf16", "loss_scale",
             "valid_step", "seed", "device", "threads", "resume_from_checkpoint", "stop_after_steps", "log_dir",
             "pbar", "deterministic", "gradient_checkpointing", "report_to")
TRAIN_DEFAULTS = dict(num_optim_steps=1000, train_batch_size=16, gradient_accumulation_steps=1, learning_rate=3e-5,
                      lr_schedule="None", warmup_steps=100, fp16=False, valid_step=100)


def train_parser() -> argparse.ArgumentParser:
    from gpt2_training.args import build_parser
    p = argparse.ArgumentParser(prog=prog_name("rank.py") + " train", description=TRAIN_USAGE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", required=True, help="a ranker (.pth, folder) or a DialoGPT .pkl/folder to start from")
    p.add_argument("--pairs", required=True, help="training pairs (JSONL)")
    p.add_argument("--eval_pairs", help="held-out pairs (JSONL): accuracy logged each --valid_step, best.pth kept")
    p.add_argument("--max_grad_norm", type=float, default=1.0, help="AdamW's global clip (--optim adamw)")
    p.add_argument("--max_cxt_turn", type=int)
    for action in build_parser()._actions:
        if action.dest in LSP_FLAGS:
            p._add_action(action)
    p.set_defaults(**TRAIN_DEFAULTS)
    for action in p._actions:
        if action.dest in TRAIN_DEFAULTS and action.help:  # LSP_train's help names its own default
            text = action.help.split(" (the original's default")[0].split(" (default:")[0]
            action.help = "default: %(default)s" if text.startswith("default:") else text + " (default: %(default)s)"
        action.required = action.required or action.dest == "output_dir"
    return p


def train_main(argv) -> int:
    p = train_parser()
    args = p.parse_args(argv)
    check_positive(p, args, "max_cxt_turn")
    from gpt2_training.cli import set_cpu_threads
    from gpt2_training.failures import failure
    from lsp_model.checkpoint import CheckpointError

    from .train import train
    set_cpu_threads(args)  # as LSP_train: one thread per free core on CPU
    try:
        res = train(args)
    except Exception as e:  # one line and LSP_train's exit status (docs/training.md); a bug keeps its traceback
        code = failure(e)
        if code is None and not isinstance(e, (ValueError, OSError, CheckpointError)):
            raise
        print(f"error: {e}", file=sys.stderr)
        return code or 2
    if not res["is_main"]:
        return 0
    if res["ranker"] is None:
        print(f"stopped after update {res['global_step']} (--stop_after_steps); continue with the same flags and "
              f"--resume_from_checkpoint last", file=sys.stderr)
    else:
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
