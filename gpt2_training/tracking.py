"""Run tracking (--report_to): the train_log.txt and eval_log.txt rows, and the run config, sent to
TensorBoard or Weights & Biases as researchers expect (transformers' `report_to`).

Each row goes out with the same columns as its log line (`train/mean_loss`, `train/n_token_real`,
..., plus `train/lr`; `eval/eval_loss`, `eval/eval_ppl`), at x = the row's global_step column.
TensorBoard writes LOG_DIR/tensorboard/ (the config as a text entry); W&B runs offline unless
WANDB_MODE says otherwise (files under LOG_DIR/wandb/, `wandb sync` uploads them later).
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from .args import UsageError

PACKAGES = {"tensorboard": ("tensorboard", "dialogpt[tensorboard]"), "wandb": ("wandb", "dialogpt[wandb]")}


def check_available(kind: str) -> None:
    """Before training: one line if the tracker's package is missing."""
    if kind in PACKAGES and importlib.util.find_spec(PACKAGES[kind][0]) is None:
        package, extra = PACKAGES[kind]
        raise UsageError(f"--report_to {kind}: {package} is not installed (pip install '{extra}')")


class Tracker:
    """--report_to none: nothing."""

    def log(self, prefix: str, step: int, values: dict) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoard(Tracker):
    def __init__(self, log_dir: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(str(Path(log_dir) / "tensorboard"))
        self.writer.add_text("run_config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```", 0)

    def log(self, prefix, step, values):
        for k, v in values.items():
            self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self):
        self.writer.close()


class WandB(Tracker):
    def __init__(self, log_dir: Path, config: dict):
        import wandb
        os.environ.setdefault("WANDB_MODE", "offline")  # no network unless the user asks for it
        name = Path(config.get("run_dir") or log_dir).name
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "dialogpt"), name=name, dir=str(log_dir),
                              config=json.loads(json.dumps(config, default=str)))

    def log(self, prefix, step, values):
        self.run.log({f"{prefix}/{k}": v for k, v in values.items()}, step=step)

    def close(self):
        self.run.finish()


def open_tracker(kind: str, log_dir, config: dict) -> Tracker:
    return {"tensorboard": TensorBoard, "wandb": WandB}.get(kind, lambda *_: Tracker())(Path(log_dir), config)
