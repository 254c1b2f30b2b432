"""The training loop of the original LSP_train.py, with its batch, step and logging semantics.

Per micro-batch: forward (autocast for fp16/bf16), loss NOT divided by the accumulation count,
backward (gradients sum over micro-batches, and over ranks through the DDP sum hook). Every
`gradient_accumulation_steps` micro-batches: set_lr(global_step), one optimizer update,
global_step += 1, a train_log row; every `valid_step` updates: save, eval, eval_log row.
Running stats stay on the device; the only host sync is one small vector per update.
The run folder (exclusive, locked, self-describing) is rundir.py's; how a run stops (one line,
an exit status, the checkpoint to resume from) is failures.py's.

What is trained on what is a task: `LMTask` (LSP_train: the LM loss over the DB loader) by
default, or another objective and data source with the same methods (lsp_rank.train.PairTask:
DialogRPT's pairwise loss over a pairs loader), so every trainer shares this one loop, its
checkpoints, exact resume, accumulation, precision and signal handling.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lsp_io.atomic import atomic_file
from lsp_model.checkpoint import CheckpointError, load_model, resolve_checkpoint
from lsp_model import runfolder
from lsp_model.lora import find_adapter
from lsp_model.model import build_model, load_config
from lsp_model.tokenizer import load_tokenizer, tokenizer_identity

from . import checkpoint as ckpt
from . import distributed as dist_utils
from . import rundir
from .amp import UpdateCasts
from .args import UsageError, resolved_config
from .determinism import deterministic_layer_norms
from .eval import check_gives_a_batch, eval_model_loss
from .failures import Interrupted, TrainingDiverged, held_signals, stop_on_signals, writing
from .logs import RunLog
from .loss import LMLoss
from .optim import LossScaler, build_optimizer, optimizer_step
from .schedule import set_lr
from .state import TrainState
from .tracking import check_available

logger = logging.getLogger("LSP_train")

CACHE_EMPTY_STEP = 10000


@dataclass
class Run:
    """One training invocation: what the loop reads and updates."""
    args: object
    d: dist_utils.Dist
    config: object
    raw_model: torch.nn.Module
    model: torch.nn.Module  # LMLoss(raw_model), DDP-wrapped on several ranks
    optimizer: torch.optim.Optimizer
    scaler: LossScaler | None
    train_loader: object
    eval_loader: object
    state: TrainState
    log: RunLog
    ckpt: ckpt.Checkpointer
    amp: object
    fp16: bool
    micro_batch: int
    casts: UpdateCasts  # low-precision weights cast once per update (gpt2_training/amp.py)
    task: object = None  # LMTask or another objective/data source (see the module docstring)
    last: dict = field(default_factory=dict)  # the last update's (and eval's) values
    lora: object = None  # gpt2_training.lora.LoraTraining for a LoRA run

    def summary(self) -> dict:
        st = self.state
        return dict(run_dir=str(self.ckpt.run_dir), global_step=st.global_step, step=st.step, epoch=st.epoch,
                    model=self.raw_model, last=self.last, n_skipped=self.scaler.n_skipped if self.scaler else 0)


def train(args, train_loader=None, eval_loader=None, task=None) -> dict:
    """Run LSP_train with parsed `args` (or another `task`, default LMTask). Loaders can be
    injected (tests, custom data); by default the task makes them. Returns a summary (run_dir,
    global_step, last losses)."""
    d = dist_utils.setup(args.local_rank, args.device)
    run = None
    try:
        with stop_on_signals(), contextlib.ExitStack() as stack:  # stack: lock, logs, cleanup
            run = open_run(args, d, train_loader, eval_loader, stack, task or LMTask())
            train_loop(run)
            if run.state.global_step >= args.num_optim_steps:
                run.task.finish(run)
        return run.summary()
    except Interrupted as e:
        if run is not None:
            e.describe(run.state.global_step, run.ckpt.last_step, run.ckpt.run_dir)
        raise
    finally:
        dist_utils.cleanup()


def train_loop(run: Run) -> None:
    """Micro-steps; every gradient_accumulation_steps an update and its log row; every
    valid_step updates a save and eval. Ends at num_optim_steps or stop_after_steps."""
    a, st = run.args, run.state
    run.model.train()
    while st.global_step < a.num_optim_steps:
        for batch in batches(run):
            micro_step(run, batch)
            if st.step % a.gradient_accumulation_steps:
                continue
            update(run)
            if st.global_step % a.valid_step == 0:
                save_and_eval(run)
            if st.global_step >= a.num_optim_steps or st.global_step == a.stop_after_steps:
                return
        if st.nb_tr_steps == 0:  # (a resume at an epoch's end carries that epoch's steps)
            raise UsageError(f"--train_input_file {a.train_input_file}: no training batch in a whole epoch "
                             f"(fewer than {run.micro_batch} features of length <= {a.max_seq_length}?)")
        st.end_epoch()


def batches(run: Run):
    """The train loader's batches; a DB chunk lsp_data refuses stops the run with one line."""
    from lsp_data.db import DBError
    it = iter(run.train_loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except DBError as e:
            last = run.ckpt.last or "none saved yet"
            raise UsageError(f"{str(e).splitlines()[0]} (met after update {run.state.global_step}); the last good "
                             f"checkpoint is {last}: rebuild the DB with prepro.py, then resume with "
                             f"--resume_from_checkpoint last") from None
        yield batch


def micro_step(run: Run, batch) -> None:
    """Forward and backward of one micro-batch. The loss is NOT divided by the accumulation count
    (the original); gradients sum over micro-batches and, through the DDP hook, over ranks."""
    st, scaler, accum = run.state, run.scaler, run.args.gradient_accumulation_steps
    ddp = run.model if run.d.world_size > 1 else None
    sync = ddp.no_sync() if ddp is not None and (st.step + 1) % accum else contextlib.nullcontext()
    run.casts.open()  # the update's first micro-batch casts the weights; the others reuse them
    with sync:
        with run.amp:
            out = run.task.forward(run, batch)
        rescale = run.micro_batch / out.rows
        loss = out.loss / rescale  # 1 unless a short batch
        (loss.float() * scaler.cur_scale if scaler is not None else loss).backward()
    st.add_micro_batch(loss, out.metric, out.n_real, out.n_total, rescale)
    if run.d.device.type == "cuda" and (st.step + 1) % CACHE_EMPTY_STEP == 0:
        torch.cuda.empty_cache()


def update(run: Run) -> None:
    """set_lr, the NaN check (the one host sync), one optimizer step, the log row."""
    a, st = run.args, run.state
    lr = set_lr(run.optimizer, st.global_step, a.lr_schedule, a.learning_rate, a.warmup_steps,
                a.warmup_proportion, run.config.n_embd, a.num_optim_steps)
    stats = dist_utils.reduce_stats(st.update_stats(), run.d).tolist()
    if not run.fp16 and not all(math.isfinite(v) for v in (stats[0], stats[3])):
        raise TrainingDiverged(
            f"non-finite training loss ({stats[3]}) at optimizer step {st.global_step + 1} "
            f"(epoch {st.epoch + 1}); stopping before the update. Last good checkpoint: "
            f"{run.ckpt.last or 'none saved yet'}. Lower --learning_rate or use fp32.")
    run.casts.close()  # before the weights change
    ok = optimizer_step(run.optimizer, run.scaler, run.task.max_grad_norm)
    run.optimizer.zero_grad(set_to_none=True)
    values = st.finish_update(stats, run.d.world_size)
    run.last = {"mean_loss": values["mean_loss"], f"mean_{run.task.metric}": values["mean_ppl"], "lr": lr,
                "skipped": not ok}
    run.log.update(st, values, lr, run.scaler, ok)


def save_and_eval(run: Run) -> None:
    """The .pkl, the eval (the original's order), then the resume state; main process only."""
    st = run.state
    if run.d.is_main:
        with run.ckpt.save(st):
            if run.eval_loader is not None and not run.args.skip_eval:
                loss, metric = run.task.evaluate(run)
                run.log.eval(st, loss, metric)
                run.last.update({"eval_loss": loss, f"eval_{run.task.metric}": metric})
                logger.info("current learning rate: %s", run.last["lr"])
        run.model.train()
    dist_utils.barrier(run.d)


def finish_lora(run: Run) -> None:
    """The end of a LoRA run: the adapter merged and written as a .pkl and a transformers folder."""
    from .checkpoint import hf_path
    if run.d.is_main:
        with held_signals(), writing(hf_path(run.ckpt.run_dir, run.state.global_step), run.ckpt.last):
            run.raw_model = run.lora.export_merged(run.ckpt.run_dir, run.state.global_step, run.ckpt.pkl_dtype,
                                                   run.ckpt.tokenizer)
    dist_utils.barrier(run.d)


# ---------------------------------------------------------------------------------------------
# the task: what is trained on what

@dataclass
class MicroBatch:
    """What a task's forward gives the loop: the loss (not divided by anything), the metric the
    logs carry beside it (ppl for the LM), the rows (a short batch is rescaled) and the tokens."""
    loss: torch.Tensor
    metric: torch.Tensor
    rows: int
    n_real: torch.Tensor  # non-padding tokens, on the device (no host sync)
    n_total: int


class LMTask:
    """LSP_train's task: the LM loss (LMLoss) over lsp_data's DB loader, the eval loss/ppl over
    the TSV, and at the end a LoRA run's merged model. Another task (lsp_rank.train.PairTask)
    gives these same methods."""
    metric = "ppl"  # the name of the logs' second column (mean_ppl, eval_ppl)
    max_grad_norm = 1.0  # AdamW's clip (the original's optimizers clip at 1.0 inside)

    def inputs(self, args, eval_loader):
        return check_inputs(args, eval_loader)

    def loaders(self, args, d, micro_batch, tokenizer):
        return make_loaders(args, d, micro_batch, tokenizer)

    def body(self, args, config):
        return build_lm(args, config)

    def loss_module(self, raw_model):
        return LMLoss(raw_model)  # (loss, ppl) without materialising the full logits

    def forward(self, run: Run, batch) -> MicroBatch:
        input_ids, position_ids, token_ids, label_ids = (t.to(run.d.device, non_blocking=True) for t in batch[:4])
        scaler = run.scaler
        loss, ppl = run.model(input_ids, position_ids, None if run.args.no_token_id else token_ids, label_ids,
                              scaler.cur_scale if scaler is not None else 1.0)
        return MicroBatch(loss, ppl, input_ids.shape[0], (input_ids != 0).sum(),
                          input_ids.shape[0] * input_ids.shape[1])

    def evaluate(self, run: Run) -> tuple[float, float]:
        return eval_model_loss(run.raw_model, run.eval_loader, run.state.epoch, run.args.no_token_id,
                               run.d.device, run.amp)

    def finish(self, run: Run) -> None:
        if run.lora is not None:
            finish_lora(run)


# ---------------------------------------------------------------------------------------------
# setup: every check before heavy work, then model, optimizer, state and run folder

def open_run(args, d, train_loader, eval_loader, stack: contextlib.ExitStack, task=None) -> Run:
    """Everything training needs; what must be closed at the end is pushed on `stack`."""
    fp16 = bool(args.fp16) and not args.bf16
    if args.bf16 and args.fp16 and d.is_main:
        logger.info("--bf16 true: training in bf16 with the fp32 optimizer (fp16 off)")
    micro_batch = args.train_batch_size // args.gradient_accumulation_steps
    check_available(args.report_to)
    seed_everything(args.seed)
    task = task or LMTask()
    config, tokenizer = task.inputs(args, eval_loader)
    if train_loader is None:
        train_loader, made_eval = task.loaders(args, d, micro_batch, tokenizer)
        eval_loader = eval_loader or made_eval
    run_dir, resume = open_run_dir(args, d, micro_batch, config, tokenizer, stack)
    raw_model, model, lora = build_models(args, d, config, task)
    optimizer = build_optimizer(raw_model, args.optim, args.learning_rate, fp16, d.device)
    scaler = LossScaler(args.loss_scale) if fp16 else None
    state = start_state(args, d)
    checkpointer = ckpt.Checkpointer(run_dir, raw_model, optimizer, scaler, train_loader,
                                     torch.float16 if fp16 else None, tokenizer, args.save_hf, d.world_size,
                                     d.is_main, lora)
    if resume is not None:
        checkpointer.restore(resume, state)
        if d.is_main and not (run_dir / "config.json").is_file():  # a run folder of an older version
            rundir.describe(run_dir, config, tokenizer)
    log_dir = Path(args.log_dir) if args.log_dir else run_dir
    run_config = write_run_config(args, run_dir, micro_batch, d, fp16, raw_model) if d.is_main else {}
    log = RunLog(log_dir, fp16, resume["global_step"] if resume else None, args.num_optim_steps,
                 state.global_step, d.is_main, args.pbar, args.report_to, run_config, task.metric)
    stack.callback(log.close)
    casts = UpdateCasts(d.device.type, fp16 or bool(args.bf16))
    stack.callback(casts.close)
    return Run(args, d, config, raw_model, model, optimizer, scaler, train_loader, eval_loader, state, log,
               checkpointer, autocast(d.device, fp16, args.bf16), fp16, micro_batch, casts, task, lora=lora)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def check_inputs(args, eval_loader):
    """(model config, tokenizer) of --model_name_or_path, and the eval file's presence."""
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
    return config, tokenizer


def make_loaders(args, d, micro_batch, tokenizer):
    """The lsp_data loaders; constructing the train loader applies lsp_data's DB checks (meta.json:
    max_seq_len, tokenizer identity, chunks), so a wrong DB fails here, before the model is built."""
    try:
        from lsp_data.loader import BucketingDataLoader, DistributedBucketingDataLoader, DynamicBatchingLoader
    except ImportError as e:
        raise UsageError(f"cannot import the data loaders (lsp_data.loader): {e}") from None
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
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"--train_input_file {args.train_input_file}: {first}") from None
    eval_loader = None
    if args.eval_input_file and not args.skip_eval:
        eval_loader = DynamicBatchingLoader(args.eval_input_file, tokenizer, args.normalize_data,
                                            args.eval_batch_size, args.max_seq_length)
        check_gives_a_batch(eval_loader, args.eval_input_file, args.eval_batch_size)
    return train_loader, eval_loader


def open_run_dir(args, d, micro_batch, config, tokenizer, stack: contextlib.ExitStack):
    """(run folder, resume state or None). The main process holds the folder's lock until the
    end; a new folder is created exclusively, describes itself (config.json, tokenizer) and is
    removed again if the run fails before its first complete checkpoint."""
    if args.resume_from_checkpoint:
        try:
            run_dir, step = ckpt.find_resume(args.resume_from_checkpoint, args.output_dir)
            if d.is_main:
                stack.enter_context(rundir.run_lock(run_dir))
                rundir.check_resume_fits(run_dir, config, tokenizer, args.model_name_or_path)
                rundir.remove_leftovers(run_dir)
            return run_dir, ckpt.load_resume_state(run_dir, step)
        except (FileNotFoundError, ValueError) as e:
            if isinstance(e, UsageError):
                raise
            raise UsageError(f"--resume_from_checkpoint: {e}") from None
    n_gpu = d.world_size if d.enabled else torch.cuda.device_count()
    name = rundir.run_dir_name(args.learning_rate, micro_batch, n_gpu, time.strftime("%Y-%m-%d%H%M%S"))
    run_dir = str(rundir.create_run_dir(args.output_dir, name)) if d.is_main else None
    run_dir = Path(dist_utils.broadcast_object(run_dir, d))
    if d.is_main:
        stack.enter_context(rundir.run_lock(run_dir))
        stack.push(lambda exc_type, *_: _remove_unfinished(run_dir, exc_type))
        rundir.describe(run_dir, config, tokenizer)
    return run_dir, None


def _remove_unfinished(run_dir: Path, exc_type) -> bool:
    """A new run that fails before it wrote anything but its scaffolding leaves no folder behind;
    a checkpoint or a log row is a result and keeps the folder (runfolder.results)."""
    if exc_type is not None and not runfolder.results(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
    return False


def build_models(args, d, config, task=None):
    """(the task's model, the module the loop calls: the task's loss over it, DDP-wrapped on
    several ranks, the LoRA state or None)."""
    task = task or LMTask()
    raw_model, lora = task.body(args, config)
    raw_model.to(d.device)
    if args.deterministic:
        deterministic_layer_norms(raw_model)
    if args.gradient_checkpointing:
        raw_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if d.is_main:
        logger.info("Number of parameter = %d", sum(p.numel() for p in raw_model.parameters()))
        if lora is not None:
            logger.info("LoRA r=%d alpha=%g on %s: %d trainable", args.lora_r, args.lora_alpha, args.lora_target,
                        sum(p.numel() for p in raw_model.parameters() if p.requires_grad))
    model = task.loss_module(raw_model)
    if d.world_size > 1:
        dist_utils.average_parameters(raw_model, d.world_size)
        model = dist_utils.wrap_ddp(model, d)
    return raw_model, model, lora


def build_lm(args, config):
    """(the GPT-2 LM, the LoRA state or None). --init_checkpoint takes any path
    lsp_model.checkpoint reads (file, transformers dir, run folder, LoRA adapter). With --lora_r
    the model is the frozen base with LoRA layers injected (a resume loads the base again, the
    adapter from the resume state)."""
    init = args.init_checkpoint if args.init_checkpoint not in (None, "", "None") else None
    if init is None or (args.resume_from_checkpoint and not args.lora_r):
        raw_model = build_model(config)
    else:
        try:
            weights, _ = resolve_checkpoint(init) if find_adapter(init) is None else (init, None)
            if weights is None:
                raise CheckpointError(f"{init}: holds no weights")
            raw_model = load_model(weights, config)
        except (CheckpointError, FileNotFoundError) as e:
            raise UsageError(f"--init_checkpoint: {str(e).splitlines()[0]}") from None
    lora = None
    if args.lora_r:
        from .lora import attach
        lora = attach(args, raw_model)
    return raw_model, lora


def start_state(args, d) -> TrainState:
    """A fresh TrainState; --continue_from N sets the counters as the original did."""
    if not args.continue_from or args.resume_from_checkpoint:
        return TrainState(d.device)
    if d.is_main:
        logger.warning("--continue_from %d only sets the step counters (global_step=N, step=2N-1) as the "
                       "original did; weights come from --init_checkpoint, optimizer state starts fresh. "
                       "Use --resume_from_checkpoint for an exact resume.", args.continue_from)
    return TrainState(d.device, global_step=args.continue_from, step=args.continue_from * 2 - 1)


def write_run_config(args, run_dir: Path, micro_batch: int, d, fp16: bool, model) -> dict:
    """run_config.json (every flag, resolved, and what the run derived); returns it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cfg = resolved_config(args) | {"micro_batch": micro_batch, "world_size": d.world_size, "device": str(d.device),
                                   "fp16_effective": fp16, "run_dir": str(run_dir), "n_params": n_params,
                                   "n_trainable": n_trainable}
    with atomic_file(run_dir / runfolder.RUN_CONFIG, "w") as f:
        json.dump(cfg, f, indent=2)
    return cfg


def autocast(device: torch.device, fp16: bool, bf16: bool):
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if fp16:
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()
