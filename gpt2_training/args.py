"""LSP_train.py's command line: every original flag with its default, plus the new ones.

Precedence: built-in defaults < --config file (JSON or YAML) < flags given on the command line.
String booleans as the original (`--fp16 true`), in the one vocabulary of lsp_io.flags (the
original's true/false, any case, plus yes/no, on/off, 1/0). Light: no torch, so --help is instant.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

from lsp_io.cli import prog_name
from lsp_io.flags import parse_bool
from lsp_model.defaults import MAX_SEQ_LEN, SEED

from .schedule import SCHEDULES

# Needed, but may come from --config; argparse requires them when no --config is given.
REQUIRED = ("model_name_or_path", "train_input_file", "output_dir")


class UsageError(ValueError):
    """Bad input found before training starts; printed as one line, exit status 2."""


boolean_string = parse_bool  # the original's name for the flag type


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog_name("LSP_train.py"), description="Train or fine-tune DialoGPT.",
                                epilog="Booleans take true or false (also yes/no, on/off, 1/0). The required "
                                       "flags may instead come from --config. See docs/training.md.")
    a = p.add_argument
    # --- the original's flags, same names, defaults and meaning
    a("--model_name_or_path", type=str, help="folder with config.json (and vocab.json/merges.txt)")
    a("--seed", type=int, default=SEED)
    a("--max_seq_length", type=int, default=MAX_SEQ_LEN)
    a("--skip_eval", action="store_true", help="skip the eval at each valid_step (unused in the original)")
    a("--init_checkpoint", type=str, help="weights to start from (.pkl, transformers dir, run folder)")
    a("--train_input_file", type=str, help="the training DB folder made by prepro.py")
    a("--eval_input_file", type=str, help="raw TSV src\\ttgt for the eval loss")
    a("--continue_from", type=int, default=0,
      help="original meaning: only sets global_step=N (and step=2N-1); weights from --init_checkpoint")
    a("--train_batch_size", type=int, default=4, help="batch size per process per optimizer step")
    a("--gradient_accumulation_steps", type=int, default=2, help="micro-batch = train_batch_size // this")
    a("--eval_batch_size", type=int, default=4)
    a("--learning_rate", type=float, default=1e-5)
    a("--num_optim_steps", type=int, default=1000000)
    a("--valid_step", type=int, default=10000, help="save + eval every N optimizer steps")
    a("--warmup_proportion", type=float, default=0.1)
    a("--warmup_steps", type=int, default=16000)
    a("--normalize_data", type=boolean_string, default=True)
    a("--fp16", type=boolean_string, default=True,
      help="fp16 autocast + dynamic loss scaling + FusedAdam semantics (the original's default; runs on CPU too)")
    a("--lr_schedule", type=str, default="noam", choices=SCHEDULES)
    a("--loss_scale", type=float, default=0, help="0 = dynamic loss scale, > 0 = static")
    a("--no_token_id", type=boolean_string, default=True)
    a("--output_dir", type=str, help="parent of the run folder GPT2.{lr}.{batch}.{n}gpu.{timestamp}")
    a("--log_dir", type=str, help="where train_log.txt/eval_log.txt go (default: the run folder)")
    a("--pbar", type=boolean_string, default=True, help="tqdm progress bar")
    a("--local_rank", "--local-rank", type=int, default=-1, help="set by torch.distributed.launch; torchrun uses env")
    a("--config", type=str, help="JSON or YAML file of flag values; explicit command-line flags win")
    # --- new
    a("--bf16", type=boolean_string, default=False, help="bf16 autocast with the fp32 optimizer (replaces --fp16)")
    a("--optim", choices=["lsp", "adamw"], default="lsp",
      help="lsp = the original's optimizer for the precision; adamw = torch AdamW (fused/foreach)")
    a("--resume_from_checkpoint", type=str,
      help="exact resume: a GP2-pretrain-step-N.pkl / .resume.pt, a run folder, or 'last' (newest under --output_dir)")
    a("--save_hf", type=boolean_string, default=False, help="also write a transformers dir next to each .pkl")
    a("--gradient_checkpointing", type=boolean_string, nargs="?", const=True, default=False)
    a("--tensorboard", type=boolean_string, nargs="?", const=True, default=False, help="= --report_to tensorboard")
    a("--stop_after_steps", type=int, default=0,
      help="end this invocation after N updates (the schedule still uses --num_optim_steps); resume later")
    a("--device", type=str, default=None, help="force a device, e.g. cpu (default: cuda if available)")
    a("--threads", type=int, default=None,
      help="CPU threads per process (default: $OMP_NUM_THREADS, else the cores free right now)")
    a("--deterministic", type=boolean_string, default=False,
      help="losses and checkpoints independent of the CPU thread count (gpt2_training/determinism.py)")
    # --- LoRA (peft; pip install dialogpt[lora]) and run tracking
    a("--lora_r", type=int, default=0, help="LoRA rank; > 0 trains a LoRA adapter on the frozen --init_checkpoint")
    a("--lora_alpha", type=float, default=16.0, help="LoRA scaling numerator (updates scale by alpha/r)")
    a("--lora_dropout", type=float, default=0.0, help="dropout on the LoRA branch's input")
    a("--lora_target", type=str, default="c_attn,c_proj,c_fc", help="comma-separated layer names LoRA adapts")
    a("--report_to", choices=["none", "tensorboard", "wandb"], default="none",
      help="also log the train/eval rows and the run config to TensorBoard or Weights & Biases (offline unless "
           "WANDB_MODE says otherwise)")
    for action in p._actions[1:]:  # after -h: show each flag's default, mark the required ones
        if action.type is parse_bool:
            action.metavar = "{true,false}"
        if action.dest in REQUIRED:
            note = "required"
        elif action.default is not None and action.nargs != 0:
            note = "default: %(default)s"
        else:
            continue
        action.help = f"{action.help} ({note})" if action.help else note
    return p


def _load_config_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config {path}: file not found")
    text = p.read_text()
    try:
        if p.suffix.lower() in (".yml", ".yaml"):
            import yaml
            cfg = yaml.safe_load(text)
        else:
            cfg = json.loads(text)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"--config {path}: cannot parse ({first})") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"--config {path}: expected a mapping of flag names to values")
    # The original substituted Philly cluster folders into string values.
    for var in ("PHILLY_JOB_DIRECTORY", "PHILLY_LOG_DIRECTORY"):
        if var in os.environ:
            cfg = {k: v.replace(var, os.environ[var]) if isinstance(v, str) else v for k, v in cfg.items()}
    return cfg


def _has_config(argv) -> bool:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    return pre.parse_known_args(argv)[0].config is not None


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    if not _has_config(argv):
        for action in parser._actions:
            action.required = action.required or action.dest in REQUIRED
    args = parser.parse_args(argv)
    if args.config:
        cfg = _load_config_file(args.config)
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(k.lstrip("-").replace("-", "_") for k in cfg) - known)
        if unknown:
            raise UsageError(f"--config {args.config}: unknown keys {', '.join(unknown)}")
        parser.set_defaults(**{k.lstrip("-").replace("-", "_"): v for k, v in cfg.items()})
        args = parser.parse_args(argv)  # explicit flags win over the file's values
        for k in [a.dest for a in parser._actions if a.type is parse_bool]:
            try:
                setattr(args, k, boolean_string(getattr(args, k)))
            except ValueError as e:
                raise UsageError(f"--config {args.config}: {k}: {e}") from None
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    if args.train_batch_size % args.gradient_accumulation_steps:
        raise UsageError(f"--train_batch_size {args.train_batch_size} is not divisible by "
                         f"--gradient_accumulation_steps {args.gradient_accumulation_steps}")
    if args.train_batch_size <= 0 or args.gradient_accumulation_steps <= 0:
        raise UsageError("--train_batch_size and --gradient_accumulation_steps must be positive")
    if args.valid_step <= 0 or args.num_optim_steps <= 0:
        raise UsageError("--valid_step and --num_optim_steps must be positive")
    if not args.output_dir:  # the original crashed in os.path.join (issue #42)
        raise UsageError("--output_dir is required (the run folder is created inside it)")
    if not args.model_name_or_path:
        raise UsageError("--model_name_or_path is required (a folder with config.json)")
    if not args.train_input_file:
        raise UsageError("--train_input_file is required (the DB folder made by prepro.py)")
    if args.tensorboard and args.report_to == "none":
        args.report_to = "tensorboard"
    if args.lora_r < 0:
        raise UsageError(f"--lora_r {args.lora_r}: must be 0 (off) or a positive rank")
    if args.lora_r:
        if args.init_checkpoint in (None, "", "None"):
            raise UsageError("--lora_r needs --init_checkpoint (the frozen base model the adapter trains on)")
        if importlib.util.find_spec("peft") is None:
            raise UsageError("--lora_r needs the peft library: pip install 'dialogpt[lora]'")
        if args.save_hf:
            raise UsageError("--save_hf with --lora_r: LoRA checkpoints hold the adapter alone; the merged "
                             "transformers folder is written at the end (or by python -m lsp_model.convert --merge)")
        if not 0 <= args.lora_dropout < 1 or args.lora_alpha <= 0:
            raise UsageError("--lora_dropout must be in [0, 1) and --lora_alpha positive")
        if not any(t.strip() for t in args.lora_target.split(",")):
            raise UsageError("--lora_target: no layer name given")


def resolved_config(args: argparse.Namespace) -> dict:
    return {k: v for k, v in sorted(vars(args).items())}
