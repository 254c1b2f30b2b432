"""Test-local glue for the training tests: small in-memory loaders with the lsp_data loader
contract (iterate one epoch, state_dict/load_state_dict of the position), tiny configs, and
argument lists. Until lsp_data's DB writer/loader are used here, golden trajectories read the
features straight from golden/train/features.128.jsonl (one full batch per epoch, as the
original's BucketingDataLoader gives for that setting)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from gpt2_training.args import parse_args


def collate(features: list[dict]):
    """The original's collate: right padding, ids/pos/type 0, labels -1."""
    T = max(len(f["input_ids"]) for f in features)

    def pad(key, value):
        return torch.tensor([f[key] + [value] * (T - len(f[key])) for f in features], dtype=torch.long)
    return pad("input_ids", 0), pad("position_ids", 0), pad("token_type_ids", 0), pad("lm_labels", -1)


class ListLoader:
    """Yields the same list of batches every epoch, resumable at any batch."""

    def __init__(self, batches):
        self.batches = list(batches)
        self.epoch, self.offset = 0, 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        while self.offset < len(self.batches):
            self.offset += 1
            yield self.batches[self.offset - 1]
        self.epoch, self.offset = self.epoch + 1, 0

    def state_dict(self):
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, sd):
        self.epoch, self.offset = sd["epoch"], sd["offset"]


def golden_train_batch(golden: Path, max_len: int = 128):
    feats = [json.loads(line) for line in (golden / "train" / "features.128.jsonl").open()]
    feats = [f for f in feats if f["input_len"] <= max_len]
    feats.sort(key=lambda f: -len(f["input_ids"]))
    return collate(feats)


def golden_eval_batches(golden: Path):
    raw = torch.load(golden / "train" / "eval_batches.pt", weights_only=True)
    return [tuple(b[k] for k in ("input_ids", "position_ids", "token_type_ids", "labels",
                                 "context_len", "response_len")) for b in raw]


def tiny_model_dir(tmp: Path, n_positions: int = 128) -> Path:
    d = tmp / "tiny_cfg"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"n_layer": 2, "n_embd": 64, "n_head": 4, "n_ctx": n_positions,
                                               "n_positions": n_positions, "vocab_size": 50257,
                                               "initializer_range": 0.02, "layer_norm_epsilon": 1e-5}))
    return d


def golden_args(golden: Path, out: Path, schedule: str, extra=()):
    """The golden commands.txt flags (model folder = golden/model/config.json + GPT-2 BPE)."""
    argv = ["--model_name_or_path", str(golden / "model"), "--init_checkpoint", str(golden / "model" / "init.pkl"),
            "--train_input_file", "unused.db", "--eval_input_file", str(golden / "train" / "eval.tsv"),
            "--output_dir", str(out), "--seed", "42", "--max_seq_length", "128", "--train_batch_size", "34",
            "--gradient_accumulation_steps", "1", "--eval_batch_size", "8", "--learning_rate", "1e-5",
            "--num_optim_steps", "30", "--valid_step", "15", "--warmup_steps", "10", "--warmup_proportion", "0.1",
            "--normalize_data", "true", "--fp16", "false", "--lr_schedule", schedule, "--loss_scale", "0",
            "--no_token_id", "true", "--pbar", "false", *extra]
    return parse_args(argv)


def read_log(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def synthetic_batches(n_batches: int, batch: int, seq: int, vocab: int, seed: int = 0):
    """Right-padded batches with a -1 context and -1 padding, like prepro's features."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        lens = torch.randint(seq // 2, seq + 1, (batch,), generator=g)
        ids = torch.zeros(batch, seq, dtype=torch.long)
        pos = torch.zeros(batch, seq, dtype=torch.long)
        labels = torch.full((batch, seq), -1, dtype=torch.long)
        for i, n in enumerate(lens.tolist()):
            toks = torch.randint(1, vocab, (n + 1,), generator=g)
            ids[i, :n], pos[i, :n] = toks[:n], torch.arange(n)
            ctx = n // 3
            labels[i, ctx:n] = toks[ctx + 1:n + 1]
        out.append((ids, pos, torch.zeros_like(ids), labels))
    return out


def tiny_args(tmp: Path, extra=(), vocab: int = 256, **kw):
    model_dir = tmp / "tiny_model"
    if not (model_dir / "config.json").is_file():
        # DDP tests call this from two ranks at once: make the folder race-free, publish atomically
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp_cfg = model_dir / f".config.{os.getpid()}.json"
        tmp_cfg.write_text(json.dumps(
            {"n_layer": 2, "n_embd": 32, "n_head": 4, "n_ctx": 64, "n_positions": 64, "vocab_size": vocab}))
        os.replace(tmp_cfg, model_dir / "config.json")
    flags = dict(model_name_or_path=model_dir, train_input_file="unused.db", output_dir=tmp / "out",
                 train_batch_size=8, gradient_accumulation_steps=2, learning_rate=1e-3, num_optim_steps=10,
                 valid_step=5, warmup_steps=4, fp16="false", lr_schedule="noam", pbar="false", max_seq_length=64,
                 skip_eval=None)
    flags.update(kw)
    argv = []
    for k, v in flags.items():
        if v is None:
            argv.append(f"--{k}")
        elif v is not False:
            argv += [f"--{k}", str(v)]
    return parse_args(argv + list(extra))
