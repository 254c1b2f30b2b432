"""Every demo setting, defined once: `DemoSettings` holds the default, the flag name and the help,
and demo.py's command line is built from it (as lsp_model.generate.add_generation_args does)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from lsp_model.defaults import MAX_SEQ_LEN

REPO = Path(__file__).resolve().parents[1]
DATA_SOURCES = ("chitchat", "dummy", "small", "full")
MODEL_SIZES = ("none", "small", "medium", "large")
INITS = ("gpt2", "ft", "fs")

# name -> decode.py flags. Contexts are <= 64 tokens, so context + reply fit n_positions 128.
DECODINGS = {
    "greedy": ["--preset", "greedy", "--max_new_tokens", "32"],
    "sample": ["--preset", "nucleus", "--max_new_tokens", "32", "--seed", "42"],  # top_p 0.9, T 0.7
}


def flag(default, help: str, name: str | None = None, **kw):
    """A dataclass field that is also a demo.py flag (`name` when it differs from the field's)."""
    meta = {"help": help, "flag": name, **kw}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DemoSettings:
    data: str = flag("chitchat", "chitchat: 4,017 real human chats (chitchat-dataset, offline); dummy: the "
                     "original's synthetic set; small/full: Reddit via make -C reddit_extractor (needs the dumps)",
                     choices=DATA_SOURCES)
    model: str = flag("none", "none: train the --config model from scratch; else start from original weights",
                      choices=MODEL_SIZES)
    init: str = flag("gpt2", "with --model: GPT-2 weights (as the original demo), or DialoGPT multiref "
                     "fine-tuned (ft) / from-scratch (fs) checkpoints", choices=INITS)
    model_dir: Path | None = flag(None, "folder already holding the checkpoint (no download)", type=Path)
    config: Path | None = flag(None, "config.json of the model to train from scratch (default: configs/tiny, 4 layers, "
                               "256 wide, 4 heads, 128 positions)", type=Path)
    steps: int = flag(500, "optimizer steps (updates)")
    batch_size: int = flag(8, "sequences per update")
    lr: float = flag(1e-5, "noam schedule base rate (the original's 1e-5)", name="--learning_rate")
    warmup_steps: int = flag(40, "noam warm-up updates")
    valid_step: int | None = flag(None, "save + eval every N updates (default: steps/4 when it divides, "
                                  "else steps)", type=int)
    n_test: int = flag(200, "held-out test contexts")
    seed: int = flag(42, "split, training and sampling seed")
    workers: int = flag(1, "processes for prepro / Reddit extraction")
    out: Path = flag(Path("demo_output"), "everything goes here", name="--output_dir", type=Path)
    meteor: bool = flag(True, "skip METEOR (it needs java)", name="--no_meteor")
    threads: int | None = flag(None, "CPU threads per stage (OMP/MKL; default: the cores free when the "
                               "demo starts)", type=int)
    bf16: bool | None = flag(None, "train with bf16 autocast (default: the faster of bf16 and fp32 here, timed "
                             "on a few updates before training)",
                             type=str, choices=("true", "false"))
    quiet: bool = flag(False, "hide the stages' output (it is still in logs/)")
    # not flags
    max_seq_len: int = MAX_SEQ_LEN
    decodings: dict = field(default_factory=lambda: dict(DECODINGS))
    python: list = field(default_factory=lambda: [sys.executable])
    repo: Path = REPO

    def __post_init__(self):
        self.out = Path(self.out)
        self.repo = Path(self.repo)
        if isinstance(self.bf16, str):
            self.bf16 = self.bf16 == "true"
        if self.steps < 1 or self.n_test < 1 or self.batch_size < 1:
            raise ValueError("--steps, --n_test and --batch_size must be positive")
        if self.threads is not None and self.threads < 1:
            raise ValueError("--threads must be positive")
        if self.valid_step is None:
            self.valid_step = self.steps // 4 if self.steps >= 4 and self.steps % 4 == 0 else self.steps
        if self.valid_step < 1 or self.steps % self.valid_step:
            raise ValueError(f"--steps {self.steps} must be a positive multiple of the valid step {self.valid_step}")
        if self.model == "none" and (self.model_dir or self.init != "gpt2"):
            raise ValueError("--model_dir/--init need --model small|medium|large")
        if self.model != "none" and self.config:
            raise ValueError("--config is for --model none; --model uses the checkpoint's own architecture")


def _flag_fields():
    return [f for f in fields(DemoSettings) if "help" in f.metadata]


def add_demo_args(p: argparse.ArgumentParser) -> None:
    """One flag per DemoSettings field that has help; defaults shown come from the dataclass."""
    for f in _flag_fields():
        m = f.metadata
        name = m["flag"] or f"--{f.name}"
        default = f.default if f.default is not MISSING else f.default_factory()
        if isinstance(default, bool) and m.get("type") is None:
            action = "store_false" if default else "store_true"
            p.add_argument(name, dest=f.name, action=action, help=m["help"])
            continue
        typ = m.get("type") or type(default)
        shown = "" if default is None else f" (default {default})"
        p.add_argument(name, dest=f.name, type=typ, choices=m.get("choices"), default=default,
                       help=m["help"] + shown)


def settings_from_args(args: argparse.Namespace, **extra) -> DemoSettings:
    return DemoSettings(**{f.name: getattr(args, f.name) for f in _flag_fields()}, **extra)
