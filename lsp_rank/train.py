"""`rank.py train`: a ranker trained on (context, better reply, worse reply) pairs.

DialogRPT's objective (src/model.py forward, master.py loss): with l = score · h at each reply's
last token, p = exp(l_pos) / (exp(l_pos) + exp(l_neg)) = sigmoid(l_pos - l_neg), and the loss is
-log p averaged over the batch; accuracy is the share of pairs with p > 0.5.

The training is LSP_train's own loop (gpt2_training.loop) with `PairTask` as its task: the
pairwise loss over `PairLoader` instead of the LM loss over the DB. So a ranker run has its
optimizers, schedules, fp16/bf16 autocast and loss scaler, gradient accumulation, a locked run
folder (config.json, tokenizer, run_config.json, train_log.txt/eval_log.txt with `acc` where
LSP_train logs `ppl`), a checkpoint pair every --valid_step updates, exact resume
(--resume_from_checkpoint last|RUN_DIR|CHECKPOINT) and SIGINT/SIGTERM handling.

Input JSONL, one pair per line: {"context": [turn, ...], "pos": "...", "neg": "..."}.
Output, under --output_dir OUT: the run folder OUT/GPT2.{lr}.{batch}.{n}gpu.{time}/ and, when the
run reaches --num_optim_steps, OUT/ranker.pth (a DialogRPT .pth: `transformer.*` +
`score.weight`) with a config.json beside it, so every ranker path (rank.py, --ranker) loads it
at its true size; OUT/best.pth too when held-out pairs are given (the checkpoint with the best
held-out accuracy, as DialogRPT keeps ckpt/best.pth).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lsp_model.tokenizer import encode_batch

from .score import context_ids, fit, last_token_logits, pad_rows

PAIR_FIELDS = ("context", "pos", "neg")


@dataclass
class Pair:
    pos: list[int]   # context + better reply
    neg: list[int]   # context + worse reply


def read_pairs(path, tok, n_positions: int, max_cxt_turn: int | None = None) -> list[Pair]:
    """Pairs of a JSONL file, encoded as rank.py scores them; a bad line is one clear error."""
    path = Path(path)
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from None
            if not isinstance(d, dict) or not set(PAIR_FIELDS) <= set(d):
                raise ValueError(f'{path}:{i}: expected {{"context": [turn, ...], "pos": "...", "neg": "..."}}')
            ctx = d["context"]
            if not (isinstance(ctx, list) and ctx and all(isinstance(t, str) for t in ctx)) or \
                    not isinstance(d["pos"], str) or not isinstance(d["neg"], str):
                raise ValueError(f'{path}:{i}: "context" must be a non-empty list of strings, "pos"/"neg" strings')
            c = context_ids(tok, ctx, max_cxt_turn)
            pos, neg = encode_batch(tok, [d["pos"].strip(), d["neg"].strip()])
            out.append(Pair(fit(c + pos, n_positions), fit(c + neg, n_positions)))
    if not out:
        raise ValueError(f"{path}: no pairs")
    return out


def collate(pairs: list[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids right-padded with EOS, lengths): the pos rows, then the neg rows, on the CPU."""
    return pad_rows([p.pos for p in pairs] + [p.neg for p in pairs], "cpu")


class PairLoader:
    """Micro-batches of training pairs, one `for` loop = one epoch: a fresh shuffle of all pairs
    from one `random.Random(seed)`, cut into batches of `batch_size`, a short last one dropped
    (as LSP_train's loader). `state_dict()` / `load_state_dict()` resume an epoch at a batch.
    With several processes (DDP), process `rank` of `num_replica` takes every num_replica-th pair
    of the shared shuffle: disjoint, and the same number of batches on every process."""

    def __init__(self, pairs: list[Pair], batch_size: int, seed: int, rank: int = 0, num_replica: int = 1):
        self.per_rank = len(pairs) // num_replica
        if self.per_rank < batch_size:
            raise ValueError(f"{len(pairs)} pairs give no full micro-batch of {batch_size} "
                             f"(--train_batch_size / --gradient_accumulation_steps)"
                             + (f" on each of {num_replica} processes" if num_replica > 1 else ""))
        self.pairs, self.batch_size, self.rank, self.num_replica = pairs, batch_size, rank, num_replica
        self._rng = random.Random(seed)
        self._epoch, self._offset, self._epoch_state = 0, 0, self._rng.getstate()

    def __len__(self) -> int:
        return self.per_rank // self.batch_size

    def __iter__(self):
        self._rng.setstate(self._epoch_state)
        order = list(range(len(self.pairs)))
        self._rng.shuffle(order)
        mine = order[self.rank::self.num_replica][:self.per_rank]
        for b in range(self._offset, len(self)):
            self._offset += 1
            yield collate([self.pairs[i] for i in mine[b * self.batch_size:(b + 1) * self.batch_size]])
        self._epoch, self._offset, self._epoch_state = self._epoch + 1, 0, self._rng.getstate()

    def state_dict(self) -> dict:
        version, internal, gauss = self._epoch_state
        return {"epoch": self._epoch, "offset": self._offset, "rng_state": [version, list(internal), gauss],
                "n_pairs": len(self.pairs), "batch_size": self.batch_size, "num_replica": self.num_replica}

    def load_state_dict(self, state: dict) -> None:
        for k, mine in (("n_pairs", len(self.pairs)), ("batch_size", self.batch_size),
                        ("num_replica", self.num_replica)):
            if state.get(k, mine) != mine:
                raise ValueError(f"the run was trained with {k}={state[k]}, now {k}={mine} "
                                 f"(resume with the same --pairs and batch flags)")
        version, internal, gauss = state["rng_state"]
        self._epoch_state = (version, tuple(internal), gauss)
        self._epoch, self._offset = state["epoch"], state["offset"]


class PairLoss(torch.nn.Module):
    """(pairwise loss, accuracy) of a collated micro-batch: what the loop calls (and DDP wraps)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = last_token_logits(self.model, ids, lens)
        l_pos, l_neg = logits.chunk(2)
        return pairwise_loss(l_pos, l_neg), (l_pos > l_neg).double().mean()


def pair_logits(model, pairs: list[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
    """(l_pos, l_neg) of a batch: both sides in one forward pass."""
    device = next(model.parameters()).device
    ids, lens = collate(pairs)
    return last_token_logits(model, ids.to(device), lens.to(device)).chunk(2)


def pairwise_loss(l_pos: torch.Tensor, l_neg: torch.Tensor) -> torch.Tensor:
    """-log(exp(l_pos) / (exp(l_pos) + exp(l_neg))), averaged (stable form of DialogRPT's)."""
    return -F.logsigmoid(l_pos - l_neg).mean()


@torch.no_grad()
def evaluate(model, pairs: list[Pair], batch_size: int) -> tuple[float, float]:
    """(mean loss, accuracy: share of pairs with l_pos > l_neg)."""
    was = model.training
    model.eval()
    loss = acc = 0.0
    for i in range(0, len(pairs), batch_size):
        lp, ln = pair_logits(model, pairs[i:i + batch_size])
        loss += -F.logsigmoid(lp - ln).sum().item()
        acc += (lp > ln).sum().item()
    model.train(was)
    return loss / len(pairs), acc / len(pairs)


def save_pth(model, out_dir: Path, name: str, state_dict: dict | None = None) -> Path:
    """A DialogRPT .pth (fp32, `model`'s tensors or those of `state_dict` under its names) with the
    config.json that fixes its size, atomically."""
    from lsp_io.atomic import atomic_file

    from .model import ARCH_KEYS
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(out_dir / "config.json", "w") as f:
        json.dump({k: getattr(model.config, k) for k in ARCH_KEYS}, f, indent=1)
    sd = state_dict if state_dict is not None else model.state_dict()
    with atomic_file(out_dir / name) as f:
        torch.save({k: sd[k].detach().float().cpu() for k in model.state_dict()}, f)
    return out_dir / name


def checkpoint_state(run_dir: Path, step: int) -> dict:
    """The weights of a run folder's checkpoint N: the resume state's fp32 copy when the .pkl is
    fp16 (--fp16 runs), else the .pkl."""
    from gpt2_training.checkpoint import load_resume_state
    from lsp_model.checkpoint import read_state_dict
    from lsp_model.runfolder import weights_path
    return load_resume_state(run_dir, step).get("model") or read_state_dict(weights_path(run_dir, step))


class PairTask:
    """gpt2_training.loop's task for a ranker: the model from --init, PairLoader over --pairs, the
    pairwise loss, held-out loss/accuracy over --eval_pairs (fp32, as rank.py scores), and at
    the end OUT/ranker.pth (+ best.pth)."""
    metric = "acc"

    def __init__(self, args):
        self.max_grad_norm = args.max_grad_norm
        self.model = None
        self.best: tuple[int, float] | None = None  # (update, held-out accuracy) of best.pth
        self.is_main = True  # False on the other processes of a torchrun job (they write nothing)

    def inputs(self, args, eval_loader):
        from gpt2_training.args import UsageError
        from lsp_model.checkpoint import CheckpointError
        from lsp_model.tokenizer import load_tokenizer

        from .model import load_head
        try:
            self.model = load_head(args.init, "fp32", "cpu")
        except (CheckpointError, OSError, ValueError) as e:
            raise UsageError(f"--init {args.init}: {str(e).splitlines()[0]}") from None
        init = Path(args.init)
        return self.model.config, load_tokenizer(init if init.is_dir() else None)

    def loaders(self, args, d, micro_batch, tokenizer):
        from gpt2_training.args import UsageError
        n_pos, turns = self.model.config.n_positions, args.max_cxt_turn
        self.is_main = d.is_main
        try:
            train = PairLoader(read_pairs(args.pairs, tokenizer, n_pos, turns), micro_batch, args.seed,
                               d.rank, d.world_size)
            held = read_pairs(args.eval_pairs, tokenizer, n_pos, turns) if args.eval_pairs else None
        except OSError as e:
            flag = "--pairs" if str(e.filename) == str(Path(args.pairs)) else "--eval_pairs"
            raise UsageError(f"{flag} {e.filename}: {e.strerror}") from None
        except ValueError as e:
            raise UsageError(str(e) if "pairs give no" not in str(e) else f"--pairs {args.pairs}: {e}") from None
        return train, held

    def body(self, args, config):
        return self.model.train(), None

    def loss_module(self, raw_model):
        return PairLoss(raw_model)

    def forward(self, run, batch):
        from gpt2_training.loop import MicroBatch
        ids, lens = (t.to(run.d.device, non_blocking=True) for t in batch)
        loss, acc = run.model(ids, lens)
        return MicroBatch(loss, acc, ids.shape[0] // 2, lens.sum(), ids.numel())

    def evaluate(self, run) -> tuple[float, float]:
        loss, acc = evaluate(run.raw_model, run.eval_loader, run.args.eval_batch_size)
        print(f"update {run.state.global_step}: eval_loss {loss:.4f} eval_acc {acc:.3f}", file=sys.stderr, flush=True)
        return loss, acc

    def finish(self, run) -> None:
        """The last update is a checkpoint too (evaluated); then OUT/ranker.pth, OUT/best.pth."""
        from gpt2_training.loop import save_and_eval
        # (every process decides alike; a resume of a finished run made no update and has it already)
        if run.state.global_step % run.args.valid_step and run.last:
            save_and_eval(run)
        if not run.d.is_main:
            return
        out = Path(run.args.output_dir)
        save_pth(run.raw_model, out, "ranker.pth")
        self.best = best_checkpoint(run.log.log_dir, run.ckpt.run_dir)
        if self.best is not None:
            save_pth(run.raw_model, out, "best.pth", checkpoint_state(run.ckpt.run_dir, self.best[0]))


def best_checkpoint(log_dir: Path, run_dir: Path) -> tuple[int, float] | None:
    """(update, accuracy) of the checkpoint with the best held-out accuracy in eval_log.txt (the
    earliest of equals) among those whose .pkl exists; None without evals. The log survives an
    exact resume (rows after the resumed update are dropped), so the whole run counts."""
    from lsp_model.runfolder import EVAL_LOG, weights_path
    path = Path(log_dir) / EVAL_LOG
    rows = [ln.split(",") for ln in path.read_text().splitlines() if ln[:1].isdigit()] if path.is_file() else []
    found = [(-float(r[4]), int(r[1]) - 1) for r in rows]  # the log's global_step column is the update + 1
    found = [f for f in found if weights_path(run_dir, f[1]).is_file()]
    return (min(found)[1], -min(found)[0]) if found else None


def loop_args(args) -> argparse.Namespace:
    """rank.py train's flags as gpt2_training.loop reads them: LSP_train's defaults for every
    flag rank.py does not take, the files mapped onto LSP_train's names, then its checks."""
    from gpt2_training.args import build_parser, check_args
    lsp = {a.dest: a.default for a in build_parser()._actions if a.dest != "help"}
    ns = argparse.Namespace(**(lsp | vars(args)))
    ns.model_name_or_path = ns.init_checkpoint = args.init
    ns.train_input_file, ns.eval_input_file = args.pairs, args.eval_pairs
    ns.skip_eval = not args.eval_pairs
    ns.eval_batch_size = args.train_batch_size
    check_args(ns)
    return ns


def train(args) -> dict:
    """Train through gpt2_training.loop; returns its summary plus `ranker` (None when the run
    stopped early, --stop_after_steps), `best_eval_acc` and `is_main` (the process that writes)."""
    from gpt2_training.loop import train as train_loop
    ns = loop_args(args)
    task = PairTask(ns)
    res = train_loop(ns, task=task)
    done = res["global_step"] >= ns.num_optim_steps
    return res | {"ranker": Path(ns.output_dir) / "ranker.pth" if done else None, "is_main": task.is_main,
                  "best_eval_acc": task.best[1] if task.best is not None else None}
