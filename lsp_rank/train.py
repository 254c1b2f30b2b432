"""`rank.py train`: a ranker trained on (context, better reply, worse reply) pairs.

DialogRPT's objective (src/model.py forward, master.py loss): with l = score · h at each reply's
last token, p = exp(l_pos) / (exp(l_pos) + exp(l_neg)) = sigmoid(l_pos - l_neg), and the loss is
-log p averaged over the batch; accuracy is the share of pairs with p > 0.5. The update reuses
LSP_train's pieces (gpt2_training): its Adam (clipping inside, weight decay groups) or AdamW,
its learning-rate schedules, fp16 autocast with its loss scaler, or bf16 autocast.

Input JSONL, one pair per line: {"context": [turn, ...], "pos": "...", "neg": "..."}.
Output: OUT/ranker.pth (a DialogRPT .pth: `transformer.*` + `score.weight`) with a config.json
beside it, so every ranker path (rank.py, --ranker) loads it at its true size; OUT/best.pth too
when held-out pairs are given (the best held-out accuracy, as DialogRPT keeps ckpt/best.pth).
"""
from __future__ import annotations

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


def pair_logits(model, pairs: list[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
    """(l_pos, l_neg) of a batch: both sides in one forward pass."""
    device = next(model.parameters()).device
    ids, lens = pad_rows([p.pos for p in pairs] + [p.neg for p in pairs], device)
    logits = last_token_logits(model, ids, lens)
    return logits[:len(pairs)], logits[len(pairs):]


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


def save_pth(model, out_dir: Path, name: str) -> Path:
    """A DialogRPT .pth (fp32 state dict) with the config.json that fixes its size, atomically."""
    from lsp_io.atomic import atomic_file
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = {k: getattr(model.config, k) for k in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head",
                                                 "n_inner", "layer_norm_epsilon")}
    with atomic_file(out_dir / "config.json", "w") as f:
        json.dump(cfg, f, indent=1)
    with atomic_file(out_dir / name) as f:
        torch.save({k: v.detach().float().cpu() for k, v in model.state_dict().items()}, f)
    return out_dir / name


def train(args) -> dict:
    from gpt2_training.loop import autocast, seed_everything
    from gpt2_training.optim import LossScaler, build_optimizer, optimizer_step
    from gpt2_training.schedule import set_lr
    from lsp_model.decoding import default_device
    from lsp_model.tokenizer import load_tokenizer

    from .model import load_head
    seed_everything(args.seed)
    device = torch.device(args.device or default_device())
    model = load_head(args.init, "fp32", str(device)).train()
    init = Path(args.init)
    tok = load_tokenizer(init if init.is_dir() else None)
    n_pos = model.config.n_positions
    train_pairs = read_pairs(args.pairs, tok, n_pos, args.max_cxt_turn)
    eval_pairs = read_pairs(args.eval_pairs, tok, n_pos, args.max_cxt_turn) if args.eval_pairs else None
    optimizer = build_optimizer(model, args.optim, args.learning_rate, args.fp16, device)
    scaler = LossScaler() if args.fp16 else None
    out = Path(args.output_dir)
    rng = random.Random(args.seed)
    order: list[int] = []
    log, best = [], -1.0
    for step in range(args.num_optim_steps):
        set_lr(optimizer, step, args.lr_schedule, args.learning_rate, args.warmup_steps, args.warmup_proportion,
               model.config.n_embd, args.num_optim_steps)
        if len(order) < args.train_batch_size:  # reshuffled epochs, as many as the steps need
            more = list(range(len(train_pairs)))
            rng.shuffle(more)
            order += more
        batch, order = [train_pairs[i] for i in order[:args.train_batch_size]], order[args.train_batch_size:]
        with autocast(device, args.fp16, args.bf16):
            loss = pairwise_loss(*pair_logits(model, batch))
        optimizer.zero_grad(set_to_none=True)
        (loss * (scaler.cur_scale if scaler is not None else 1.0)).backward()
        optimizer_step(optimizer, scaler, args.max_grad_norm)
        row = {"step": step + 1, "loss": loss.item()}
        if eval_pairs is not None and ((step + 1) % args.valid_step == 0 or step + 1 == args.num_optim_steps):
            row["eval_loss"], row["eval_acc"] = evaluate(model, eval_pairs, args.train_batch_size)
            if row["eval_acc"] > best:
                best = row["eval_acc"]
                save_pth(model, out, "best.pth")
            print(f"step {step + 1}: loss {row['loss']:.4f} eval_loss {row['eval_loss']:.4f} "
                  f"eval_acc {row['eval_acc']:.3f}", file=sys.stderr, flush=True)
        log.append(row)
    save_pth(model, out, "ranker.pth")
    from lsp_io.atomic import atomic_file
    with atomic_file(out / "train_log.jsonl", "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in log))
    return {"log": log, "best_eval_acc": best if eval_pairs is not None else None, "ranker": out / "ranker.pth"}
