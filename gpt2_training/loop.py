"""The training loop of the original LSP_train.py, with its batch, step and logging semantics.

Per micro-batch: forward (autocast for fp16/bf16), loss NOT divided by the accumulation count,
backward (gradients sum over micro-batches, and over ranks through the DDP sum hook). Every
`gradient_accumulation_steps` micro-batches: set_lr(global_step), one optimizer update,
global_step += 1, a train_log row; every `valid_step` updates: save, eval, eval_log row.
Running stats stay on the device; the only host sync is one small vector per update.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from lsp_io.atomic import atomic_file
from lsp_model.checkpoint import CheckpointError, load_weights, read_state_dict
from lsp_model.model import build_model, load_config
from lsp_model.tokenizer import load_tokenizer

from . import checkpoint as ckpt
from . import distributed as dist_utils
from .args import UsageError, resolved_config
from .eval import eval_model_loss
from .loss import LMLoss
from .logs import eval_row, make_pbar, open_logs, pbar_postfix, train_row
from .optim import LossScaler, build_optimizer, optimizer_step
from .schedule import set_lr

logger = logging.getLogger("LSP_train")

INF = 1e8
CACHE_EMPTY_STEP = 10000


class TrainingDiverged(RuntimeError):
    """A non-finite loss in fp32/bf16: the run stops, the last saved checkpoint stays the good one."""


def run_dir_name(lr: float, micro_batch: int, n_gpu: int, timestamp: str) -> str:
    return f"GPT2.{lr}.{micro_batch}.{n_gpu}gpu.{timestamp}"


def check_db(db: str, max_seq_length: int, tokenizer) -> None:
    """Fail before training on a DB made for another max length or tokenizer (reads meta.json)."""
    p = Path(db)
    if not p.exists():
        raise UsageError(f"--train_input_file {db}: not found (build it with prepro.py)")
    meta_file = p / "meta.json"
    if not meta_file.is_file():
        return
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"{meta_file}:{e.lineno}: not valid JSON") from None
    if "max_seq_len" in meta and int(meta["max_seq_len"]) != max_seq_length:
        raise UsageError(f"{meta_file}: DB built with max_seq_len {meta['max_seq_len']}, but "
                         f"--max_seq_length is {max_seq_length}; rebuild it or pass the matching value")
    from lsp_model.tokenizer import tokenizer_identity
    for k, v in meta.items():
        if "tokenizer" in k and isinstance(v, str) and len(v) == 64:
            if v != tokenizer_identity(tokenizer):
                raise UsageError(f"{meta_file}: DB built with another tokenizer ({k} {v[:12]}...) than "
                                 f"--model_name_or_path's; rebuild the DB with this tokenizer")


def make_loaders(args, d, micro_batch, tokenizer):
    try:
        from lsp_data.loader import (BucketingDataLoader, DistributedBucketingDataLoader,
                                     DynamicBatchingLoader)
    except ImportError as e:
        raise UsageError(f"cannot import the data loaders (lsp_data.loader): {e}") from None
    from lsp_model.tokenizer import tokenizer_identity
    ident = tokenizer_identity(tokenizer)
    try:
        if d.world_size > 1:
            train_loader = DistributedBucketingDataLoader(d.rank, d.world_size, args.train_input_file, micro_batch,
                                                          args.max_seq_length, seed=args.seed,
                                                          tokenizer_identity=ident)
        else:
            train_loader = BucketingDataLoader(args.train_input_file, micro_batch, args.max_seq_length,
                                               seed=args.seed, tokenizer_identity=ident)
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"--train_input_file {args.train_input_file}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    eval_loader = None
    if args.eval_input_file and not args.skip_eval:
        eval_loader = DynamicBatchingLoader(args.eval_input_file, tokenizer, args.normalize_data,
                                            args.eval_batch_size, args.max_seq_length)
    return train_loader, eval_loader


def _load_init(model, path: str) -> None:
    try:
        load_weights(model, read_state_dict(path) if not Path(path).is_dir() else _dir_state_dict(path), source=path)
    except (CheckpointError, FileNotFoundError) as e:
        raise UsageError(f"--init_checkpoint: {str(e).splitlines()[0]}") from None


def _dir_state_dict(path: str) -> dict:
    from lsp_model.checkpoint import resolve_checkpoint
    weights, _ = resolve_checkpoint(path)
    if weights is None:
        raise CheckpointError(f"{path}: holds no weights")
    return read_state_dict(weights)


def _amp(device: torch.device, fp16: bool, bf16: bool):
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if fp16:
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def train(args, train_loader=None, eval_loader=None) -> dict:
    """Run LSP_train with parsed `args`. Loaders can be injected (tests, custom data); by default
    they come from lsp_data. Returns a summary (run_dir, global_step, last losses)."""
    d = dist_utils.setup(args.local_rank, args.device)
    try:
        return _train(args, d, train_loader, eval_loader)
    finally:
        dist_utils.cleanup()


def _train(args, d, train_loader, eval_loader) -> dict:
    fp16 = bool(args.fp16) and not args.bf16
    if args.bf16 and args.fp16 and d.is_main:
        logger.info("--bf16 true: training in bf16 with the fp32 optimizer (fp16 off)")
    micro_batch = args.train_batch_size // args.gradient_accumulation_steps
    device = d.device
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(args.seed)

    # ---- checks and run folder, before any heavy work
    if not Path(args.model_name_or_path).is_dir() and not Path(args.model_name_or_path).is_file():
        raise UsageError(f"--model_name_or_path {args.model_name_or_path}: not found")
    try:
        config = load_config(args.model_name_or_path)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--model_name_or_path: {e}") from None
    tokenizer = load_tokenizer(args.model_name_or_path)
    if args.max_seq_length > config.n_positions:
        raise UsageError(f"--max_seq_length {args.max_seq_length} exceeds the model's n_positions {config.n_positions}")
    if eval_loader is None and not args.skip_eval:
        if not args.eval_input_file:
            raise UsageError("--eval_input_file is required (or pass --skip_eval)")
        if not Path(args.eval_input_file).is_file():
            raise UsageError(f"--eval_input_file {args.eval_input_file}: file not found")
    if train_loader is None:
        check_db(args.train_input_file, args.max_seq_length, tokenizer)

    resume = None
    if args.resume_from_checkpoint:
        try:
            run_dir, resume_step = ckpt.find_resume(args.resume_from_checkpoint, args.output_dir)
            resume = ckpt.load_resume_state(run_dir, resume_step)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(f"--resume_from_checkpoint: {e}") from None
    else:
        n_gpu = d.world_size if d.enabled else torch.cuda.device_count()
        stamp = dist_utils.broadcast_object(time.strftime("%Y-%m-%d%H%M%S"), d)
        run_dir = Path(args.output_dir) / run_dir_name(args.learning_rate, micro_batch, n_gpu, stamp)
    log_dir = Path(args.log_dir) if args.log_dir else run_dir

    # ---- model
    model = build_model(config)
    if resume is not None:
        sd = resume.get("model") or read_state_dict(ckpt.pkl_path(run_dir, resume["global_step"]))
        load_weights(model, sd, source=str(run_dir))
    elif args.init_checkpoint and args.init_checkpoint != "None":
        _load_init(model, args.init_checkpoint)
    if train_loader is None:
        train_loader, made_eval = make_loaders(args, d, micro_batch, tokenizer)
        eval_loader = eval_loader or made_eval
    model.to(device)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    n_params = sum(p.numel() for p in model.parameters())
    if d.is_main:
        logger.info("Number of parameter = %d", n_params)
    raw_model = model
    model = LMLoss(raw_model)  # (loss, ppl) without materialising the full logits
    if d.world_size > 1:
        dist_utils.average_parameters(raw_model, d.world_size)
        model = dist_utils.wrap_ddp(model, d)

    optimizer = build_optimizer(raw_model, args.optim, args.learning_rate, fp16, device)
    scaler = LossScaler(args.loss_scale) if fp16 else None

    # ---- counters (the original's names)
    global_step, step, epoch = 0, 0, 0
    if args.continue_from and resume is None:
        if d.is_main:
            logger.warning("--continue_from %d only sets the step counters (global_step=N, step=2N-1) as the "
                           "original did; weights come from --init_checkpoint, optimizer state starts fresh. "
                           "Use --resume_from_checkpoint for an exact resume.", args.continue_from)
        global_step = args.continue_from
        step = global_step * 2 - 1
    carry = None  # running stats of an epoch interrupted by a save, restored on resume
    if resume is not None:
        c = resume["counters"]
        global_step, step, epoch = c["global_step"], c["step"], c["epoch"]
        carry = c
        optimizer.load_state_dict(resume["optimizer"])
        if scaler is not None and resume["scaler"] is not None:
            scaler.load_state_dict(resume["scaler"])
        if resume["loader"] is not None and hasattr(train_loader, "load_state_dict"):
            train_loader.load_state_dict(resume["loader"])
        if c.get("world_size", 1) != d.world_size and d.is_main:
            logger.warning("resuming a %d-process run on %d processes: data order differs",
                           c.get("world_size", 1), d.world_size)
        ckpt.set_rng_state(resume["rng"])  # last: model building above consumed RNG

    train_logger = eval_logger = tb = None
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(run_dir / "run_config.json", "w") as f:
            json.dump(resolved_config(args) | {"micro_batch": micro_batch, "world_size": d.world_size,
                                               "device": str(device), "fp16_effective": fp16,
                                               "run_dir": str(run_dir), "n_params": n_params}, f, indent=2)
        train_logger, eval_logger = open_logs(log_dir, fp16, resume["global_step"] if resume else None)
        if args.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                tb = SummaryWriter(str(log_dir / "tensorboard"))
            except ImportError:
                logger.warning("--tensorboard: tensorboard is not installed (pip install dialogpt[tensorboard]); skipped")

    amp = _amp(device, fp16, args.bf16)
    pbar = make_pbar(args.num_optim_steps, global_step, d.is_main and args.pbar)
    ddp = model if d.world_size > 1 else None
    accum = args.gradient_accumulation_steps
    last_ckpt = None
    last = {}
    cuda = device.type == "cuda"
    zero = lambda: torch.zeros((), dtype=torch.float64, device=device)  # noqa: E731

    model.train()
    done = global_step >= args.num_optim_steps
    resumed_at_epoch_end = resume is not None
    while not done:
        if carry is not None:  # resumed inside this epoch
            tr_loss, tr_ppl, mean_ppl = (torch.tensor(carry[k], dtype=torch.float64, device=device)
                                         for k in ("tr_loss", "tr_ppl", "mean_ppl"))
            nb_tr_steps, n_token_total = carry["nb_tr_steps"], carry["n_token_total"]
            n_token_real = torch.tensor(carry["n_token_real"], dtype=torch.float64, device=device)
            epoch_start = time.time() - carry["epoch_time"]
            carry = None
        else:
            tr_loss, tr_ppl, mean_ppl, n_token_real = zero(), zero(), zero(), zero()
            nb_tr_steps, n_token_total = 0, 0
            epoch_start = time.time()
        update_loss = zero()
        n_batches = 0
        for batch in train_loader:
            n_batches += 1
            input_ids, position_ids, token_ids, label_ids = (
                t.to(device, non_blocking=True) for t in batch[:4])
            if args.no_token_id:
                token_ids = None
            sync = ddp.no_sync() if ddp is not None and (step + 1) % accum else contextlib.nullcontext()
            with sync:
                with amp:
                    loss, ppl = model(input_ids, position_ids, token_ids, label_ids,
                                      scaler.cur_scale if scaler is not None else 1.0)
                rescale = micro_batch / input_ids.shape[0]
                loss = loss / rescale  # 1 unless a short batch
                (loss.float() * scaler.cur_scale if scaler is not None else loss).backward()
            tr_loss += loss.detach().double() * rescale
            update_loss += loss.detach().double()
            nb_tr_steps += 1
            mean_loss = tr_loss / nb_tr_steps
            ppl = ppl.detach().double()
            tr_ppl += torch.where(ppl < INF, ppl, mean_ppl)
            mean_ppl = tr_ppl / nb_tr_steps
            n_token_total += input_ids.shape[0] * input_ids.shape[1]
            n_token_real += (input_ids != 0).sum()
            step += 1
            if cuda and (step + 1) % CACHE_EMPTY_STEP == 0:
                torch.cuda.empty_cache()
            if step % accum:
                continue

            # ---- one optimizer update
            lr = set_lr(optimizer, global_step, args.lr_schedule, args.learning_rate, args.warmup_steps,
                        args.warmup_proportion, config.n_embd, args.num_optim_steps)
            stats = torch.stack([mean_loss, mean_ppl, n_token_real, update_loss])
            stats = dist_utils.reduce_stats(stats, d).tolist()  # the one host sync per update
            if not fp16 and not all(math.isfinite(v) for v in (stats[0], stats[3])):
                raise TrainingDiverged(
                    f"non-finite training loss ({stats[3]}) at optimizer step {global_step + 1} "
                    f"(epoch {epoch + 1}); stopping before the update. Last good checkpoint: "
                    f"{last_ckpt or 'none saved yet'}. Lower --learning_rate or use fp32.")
            ok = optimizer_step(optimizer, scaler)
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            update_loss = zero()
            mean_loss_all, mean_ppl_all = stats[0] / d.world_size, stats[1] / d.world_size
            n_real_all = int(stats[2])
            n_total_all = n_token_total * d.world_size
            if d.world_size > 1:
                mean_ppl = torch.tensor(mean_ppl_all, dtype=torch.float64, device=device)
            epoch_time = time.time() - epoch_start
            last = dict(mean_loss=mean_loss_all, mean_ppl=mean_ppl_all, lr=lr, skipped=not ok)
            if d.is_main:
                pbar.update(1)
                pbar.set_postfix_str(pbar_postfix(n_real_all, epoch_time, mean_ppl_all, mean_loss_all, lr, epoch),
                                     refresh=False)
                print(train_row(epoch, global_step, step, mean_loss_all, mean_ppl_all, n_real_all, n_total_all,
                                epoch_time, scaler), file=train_logger)
                if scaler is not None and not ok:
                    logger.info("fp16 overflow at update %d: step skipped, loss scale -> %g",
                                global_step, scaler.cur_scale)
                if tb is not None:
                    tb.add_scalar("train/loss", mean_loss_all, global_step)
                    tb.add_scalar("train/ppl", mean_ppl_all, global_step)
                    tb.add_scalar("train/lr", lr, global_step)

            if global_step % args.valid_step == 0:
                loader_state = train_loader.state_dict() if hasattr(train_loader, "state_dict") else None
                if d.is_main:
                    pkl_dtype = torch.float16 if fp16 else None
                    ckpt.save_weights(run_dir, global_step, raw_model, pkl_dtype, tokenizer, args.save_hf)
                    if eval_loader is not None and not args.skip_eval:
                        eval_loss, eval_ppl = eval_model_loss(raw_model, eval_loader, epoch, args.no_token_id,
                                                              device, amp)
                        print(eval_row(epoch, global_step, step, eval_loss, eval_ppl), file=eval_logger)
                        last.update(eval_loss=eval_loss, eval_ppl=eval_ppl)
                        if tb is not None:
                            tb.add_scalar("eval/loss", eval_loss, global_step)
                        logger.info("current learning rate: %s", lr)
                    counters = dict(global_step=global_step, step=step, epoch=epoch, nb_tr_steps=nb_tr_steps,
                                    tr_loss=tr_loss.item(), tr_ppl=tr_ppl.item(), mean_ppl=mean_ppl.item(),
                                    n_token_real=n_token_real.item(), n_token_total=n_token_total,
                                    epoch_time=time.time() - epoch_start, world_size=d.world_size)
                    last_ckpt = ckpt.save_resume(run_dir, global_step, raw_model, optimizer, scaler, counters,
                                                 loader_state, pkl_dtype)
                    model.train()
                dist_utils.barrier(d)
            if global_step >= args.num_optim_steps or global_step == args.stop_after_steps:
                done = True
                break
        if not done:
            if n_batches == 0 and not resumed_at_epoch_end:
                raise UsageError(f"--train_input_file {args.train_input_file}: no training batch in a whole "
                                 f"epoch (fewer than {micro_batch} features of length <= {args.max_seq_length}?)")
            resumed_at_epoch_end = False
            epoch += 1
    pbar.close()
    for f in (train_logger, eval_logger):
        if f is not None:
            f.close()
    if tb is not None:
        tb.close()
    return dict(run_dir=str(run_dir), global_step=global_step, step=step, epoch=epoch,
                model=raw_model, last=last, n_skipped=scaler.n_skipped if scaler else 0)
