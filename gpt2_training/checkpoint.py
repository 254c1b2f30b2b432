"""Training checkpoints: the original's GP2-pretrain-step-N.pkl plus a resume state for exact resume.

Each save writes, in this order, each file atomically (temp name + rename):
  GP2-pretrain-step-N.pkl        model weights in the original layout (what tools and users load)
  GP2-pretrain-step-N.resume.pt  optimizer, loss scaler, counters, every RNG state, loader position
                                 (+ fp32 weights when the .pkl is fp16); written last = commit mark
A LoRA run (gpt2_training/lora.py) writes the adapter folder GP2-pretrain-step-N-lora/ in place
of the .pkl, and its resume state holds the adapter weights.
A save killed half way leaves only a `.tmp-*` file or a .pkl without its .resume.pt, and
`find_resume` skips it, so the previous pair stays the usable checkpoint. Everything in the
resume state is tensors or plain Python types, so it reads back with weights_only=True.
"""
from __future__ import annotations

import contextlib
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from lsp_io.atomic import atomic_file
from lsp_model.checkpoint import CheckpointError, load_weights, read_state_dict, save_original_pkl, save_pretrained
# the run folder's names are lsp_model.runfolder's; loop.py names them from here
from lsp_model.runfolder import (CKPT_PREFIX, adapter_path, complete_steps, has_weights, hf_path,  # noqa: F401
                                 resume_path, step_of)
from lsp_model.runfolder import weights_path as pkl_path

from .args import UsageError
from .failures import CheckpointWriteError, held_signals, writing

logger = logging.getLogger("LSP_train")

def rng_state() -> dict:
    np_state = np.random.get_state()
    st = {"python": random.getstate(),
          "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    name, keys, *rest = st["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_resume(run_dir, step: int, model, optimizer, scaler, counters: dict, loader_state,
                pkl_dtype=None, extra: dict | None = None) -> Path:
    """The resume state; written after the .pkl (and the eval row), it marks the pair complete."""
    state = {"format": "dialogpt-resume-v1", "global_step": step, "counters": counters,
             "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
             "rng": rng_state(), "loader": loader_state}
    if pkl_dtype not in (None, torch.float32):  # the .pkl lost precision: keep the fp32 master weights
        state["model"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    state |= extra or {}
    path = resume_path(run_dir, step)
    with atomic_file(path) as f:
        torch.save(state, f)
    return path


def find_resume(spec: str, output_dir: str | None) -> tuple[Path, int]:
    """(run folder, step) for --resume_from_checkpoint PATH|last."""
    if spec == "last":
        if not output_dir or not Path(output_dir).is_dir():
            raise FileNotFoundError(f"--resume_from_checkpoint last: no output folder {output_dir}")
        runs = [d for d in Path(output_dir).iterdir() if d.is_dir() and complete_steps(d)]
        if not runs:
            raise FileNotFoundError(f"--resume_from_checkpoint last: no run folder with a complete "
                                    f"checkpoint (.pkl + .resume.pt) under {output_dir}")
        run = max(runs, key=lambda d: resume_path(d, complete_steps(d)[0]).stat().st_mtime)
        return run, complete_steps(run)[0]
    p = Path(spec)
    if not p.exists():
        raise FileNotFoundError(f"{p}: not found")
    if p.is_dir():
        steps = complete_steps(p)
        if not steps:
            raise FileNotFoundError(f"{p}: no complete checkpoint (.pkl + .resume.pt)")
        return p, steps[0]
    step = step_of(p)
    if step is None:
        raise FileNotFoundError(f"{p}: not a {CKPT_PREFIX}N.pkl/.resume.pt/-lora or a run folder")
    if not (resume_path(p.parent, step).is_file() and has_weights(p.parent, step)):
        raise FileNotFoundError(f"{p}: checkpoint of step {step} is incomplete (needs .pkl and .resume.pt)")
    return p.parent, step


def load_resume_state(run_dir, step: int) -> dict:
    path = resume_path(run_dir, step)
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: unreadable resume state ({type(e).__name__})") from None
    if not isinstance(st, dict) or st.get("format") != "dialogpt-resume-v1":
        raise ValueError(f"{path}: not a resume state written by gpt2_training")
    return st


class Checkpointer:
    """Owns everything about saving and resuming a run: weights, optimizer, loss scaler, loader
    position, every RNG and the TrainState. `last` is the newest complete pair's .resume.pt."""

    def __init__(self, run_dir, model, optimizer, scaler, loader, pkl_dtype, tokenizer=None,
                 save_hf: bool = False, world_size: int = 1, is_main: bool = True, lora=None):
        self.run_dir, self.model, self.optimizer, self.scaler = Path(run_dir), model, optimizer, scaler
        self.loader, self.pkl_dtype, self.tokenizer, self.save_hf = loader, pkl_dtype, tokenizer, save_hf
        self.world_size, self.is_main = world_size, is_main
        self.lora = lora  # gpt2_training.lora.LoraTraining for a LoRA run
        self.last: Path | None = None

    @contextlib.contextmanager
    def save(self, state):
        """Write the .pkl, run the body (the eval, as the original), then the .resume.pt that
        completes the pair. An exception in the body leaves the pair incomplete (ignored)."""
        step, last = state.global_step, self.last
        loader_state = self.loader.state_dict() if hasattr(self.loader, "state_dict") else None
        weights = pkl_path(self.run_dir, step) if self.lora is None else adapter_path(self.run_dir, step)
        with held_signals(), writing(weights, last):
            if self.lora is None:
                save_original_pkl(self.model, weights, dtype=self.pkl_dtype)
            else:
                self.lora.save(weights, self.model.config, self.tokenizer)
        try:
            if self.save_hf:  # a transformers dir next to the .pkl
                with held_signals(), writing(hf_path(self.run_dir, step), last):
                    save_pretrained(self.model, hf_path(self.run_dir, step), tokenizer=self.tokenizer)
            yield
            with held_signals(), writing(resume_path(self.run_dir, step), last):
                self.last = save_resume(self.run_dir, step, self.model, self.optimizer, self.scaler,
                                        state.state_dict() | {"world_size": self.world_size}, loader_state,
                                        self.pkl_dtype if self.lora is None else None,
                                        self.lora.resume_state() if self.lora is not None else None)
        except CheckpointWriteError:  # drop the half pair: frees the space, `last` stays the newest
            pkl_path(self.run_dir, step).unlink(missing_ok=True)
            shutil.rmtree(adapter_path(self.run_dir, step), ignore_errors=True)
            shutil.rmtree(hf_path(self.run_dir, step), ignore_errors=True)
            raise

    @property
    def last_step(self) -> int | None:
        return step_of(self.last) if self.last is not None else None

    def restore(self, resume: dict, state) -> None:
        """Exact resume from `load_resume_state`'s dict: weights (the fp32 copy if the .pkl is
        fp16), counters and running sums, optimizer, scaler, loader position, and last every RNG
        (building the model consumed some)."""
        step = resume["global_step"]
        if self.lora is not None:  # the base came from --init_checkpoint; the adapter from here
            self.lora.restore(resume, self.run_dir)
        elif "lora" in resume:
            raise UsageError(f"--resume_from_checkpoint: {self.run_dir} is a LoRA run; resume it with its "
                             f"--init_checkpoint and --lora_* flags")
        else:
            try:
                load_weights(self.model, resume.get("model") or read_state_dict(pkl_path(self.run_dir, step)),
                             source=str(self.run_dir))
            except CheckpointError as e:
                raise UsageError(f"--resume_from_checkpoint: {str(e).splitlines()[0]}") from None
        c = resume["counters"]
        state.load_state_dict(c)
        self.optimizer.load_state_dict(resume["optimizer"])
        if self.scaler is not None and resume["scaler"] is not None:
            self.scaler.load_state_dict(resume["scaler"])
        if resume["loader"] is not None and hasattr(self.loader, "load_state_dict"):
            self.loader.load_state_dict(resume["loader"])
        if c.get("world_size", 1) != self.world_size and self.is_main:
            logger.warning("resuming a %d-process run on %d processes: data order differs",
                           c.get("world_size", 1), self.world_size)
        set_rng_state(resume["rng"])
        self.last = resume_path(self.run_dir, step)
