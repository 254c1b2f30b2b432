"""The demo's stages: data -> model -> prepro -> train -> decode -> evaluate -> report. Each one
prints what it does, runs a toolkit command line (pipeline.build.run), and is skipped when its
output exists, is valid, and was made from the same inputs and settings (its stamp).

Validity: a DB that lsp_data opens with every chunk its meta.json lists, a run folder with the
final checkpoint, a hypothesis file with one line per test context, an eval JSON over every line.
Training interrupted (Ctrl-C, a kill) resumes on the next run from its last complete checkpoint
with LSP_train's exact resume; a run folder left without any checkpoint is removed.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from gpt2_training.precision import describe
from lsp_model.runfolder import TRAIN_LOG, complete_steps, run_dirs, weights_path

from .build import Interrupted, StageError, count_lines, fingerprint, run, say, stamp_matches, write_stamp
from .settings import REPO, DemoSettings

__all__ = ["DemoSettings", "StageError", "Interrupted", "run_demo", "tiny_config"]


# The demo's default model, configs/tiny (also the offline own-data trial's, README): small enough
# to train for a few minutes on 2 CPU cores. The GPT-2 vocabulary (50,257 x n_embd tied head)
# dominates its cost, not the 4 layers. Read when used: an installed package has no configs/.
def tiny_config() -> dict:
    return json.loads((REPO / "configs" / "tiny" / "config.json").read_text())


MIN_TRAIN_LINES = {"dummy": 100, "chitchat": 1000, "small": 1, "full": 1}


def check_train_tsv(path: Path, min_lines: int) -> int:
    """The number of lines of a plausible training TSV; StageError naming file and line if not."""
    if not path.is_file():
        raise StageError(f"{path}: training data was not produced")
    n = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if n <= 1000 and line.rstrip("\r\n").count("\t") != 1:
                raise StageError(f"{path}:{n}: expected 'w turn EOS w turn ...<TAB>w response' (one tab), "
                                 f"got {line[:80]!r}")
    if n < min_lines:
        raise StageError(f"{path}: {n} training lines, fewer than the {min_lines} a run needs "
                         f"(empty or truncated data?)")
    return n


# ---------------------------------------------------------------------------------------------
# data

def data_files(s: DemoSettings) -> dict[str, Path]:
    from lsp_data.datafolder import FILES  # the data sources' one set of file names
    d = s.out / "data"
    return {"train": d / FILES["train"], "contexts": d / FILES["contexts"], "refs": d / FILES["refs"],
            "meta": d / FILES["summary"]}


def data_valid(files: dict[str, Path]) -> str | None:
    """Why the data is unusable (None when it is fine)."""
    if not all(p.is_file() for p in files.values()):
        return "missing files"
    try:
        meta = json.loads(files["meta"].read_text())
    except ValueError:
        return "unreadable data.json"
    n = count_lines(files["contexts"])
    if n == 0 or n != count_lines(files["refs"]) or n != meta.get("test_examples"):
        return "test files disagree"
    if files["train"].stat().st_size == 0:
        return "empty train.tsv"
    return None


def stage_data(s: DemoSettings, threads: int) -> dict[str, Path]:
    files = data_files(s)
    key = {"data": s.data, "n_test": s.n_test, "seed": s.seed, "max_seq_len": s.max_seq_len}
    stamp = stamp_matches(s.out, "data", key)
    if stamp and data_valid(files) is None and stamp.get("train") == fingerprint(files["train"]):
        say(f"data: skipped ({files['train']} is there and valid)")
        return files
    t0 = time.time()
    if s.data == "chitchat":
        from lsp_data.chitchat import DataError, convert
        say(f"data: chitchat-dataset -> DialoGPT TSV ({s.n_test} held-out conversations, seed {s.seed})")
        try:
            stats = convert(files["train"].parent, n_test=s.n_test, seed=s.seed, max_seq_len=s.max_seq_len)
        except DataError as e:
            raise StageError(f"data: {e}") from None
    elif s.data == "dummy":
        from lsp_data.dummy import generate
        say("data: generating the original's dummy single-turn set")
        stats = generate(files["train"].parent, n_test=s.n_test, seed=s.seed)
    else:
        from .reddit_source import reddit_data
        stats = reddit_data(s, files, threads)
    n = check_train_tsv(files["train"], MIN_TRAIN_LINES[s.data])
    say(f"data: {n:,} training lines, {stats['test_examples']} test contexts "
        f"in {time.time() - t0:.0f}s -> {files['train'].parent}")
    write_stamp(s.out, "data", key, train=fingerprint(files["train"]), stats=stats)
    return files


# ---------------------------------------------------------------------------------------------
# model config and initial checkpoint

def model_config(s: DemoSettings) -> dict:
    if s.model != "none":
        from lsp_model.download import LOCAL_CONFIG
        return json.loads((s.repo / LOCAL_CONFIG[s.model] / "config.json").read_text())
    if s.config is None:
        return tiny_config()
    try:
        return json.loads(Path(s.config).read_text())
    except (OSError, ValueError) as e:
        raise StageError(f"--config {s.config}: cannot read a config.json ({e})") from None


def stage_model(s: DemoSettings) -> tuple[Path, Path | None]:
    """(model folder with config.json + tokenizer files, init checkpoint or None)."""
    from lsp_io.atomic import atomic_file
    from lsp_model.tokenizer import load_tokenizer, save_tokenizer

    mdir = s.out / "model"
    cfg, init = model_config(s), None
    if s.model != "none":
        from lsp_model.download import DownloadError, fetch_model_files
        folder = s.model_dir if s.model_dir is not None else s.repo / "models" / s.model
        say(f"model: {s.model} ({s.init}) checkpoint, from {folder}")
        try:
            init = fetch_model_files(s.model, s.init, folder, model_dir=s.model_dir)
        except DownloadError as e:
            raise StageError(f"model: {e}") from None
    text = json.dumps(cfg, indent=2, sort_keys=True) + "\n"
    if not (mdir / "config.json").is_file() or (mdir / "config.json").read_text() != text:
        with atomic_file(mdir / "config.json", "w") as f:
            f.write(text)
    if not (mdir / "vocab.json").is_file():
        save_tokenizer(load_tokenizer(), mdir)
    desc = ", ".join(f"{k} {cfg[k]}" for k in ("n_layer", "n_embd", "n_head", "n_positions") if k in cfg)
    say(f"model: {desc}; config {mdir / 'config.json'}; init {init or 'random (from scratch)'}")
    return mdir, init


# ---------------------------------------------------------------------------------------------
# prepro

def db_problem(db: Path, max_seq_len: int) -> str | None:
    """Why `db` cannot be used (None when it can): lsp_data's one DB rule (lsp_data.db.check_db)."""
    from lsp_data.db import DBError, check_db
    try:
        meta = check_db(db, max_seq_len)
    except (OSError, DBError) as e:
        return str(e).splitlines()[0]
    return None if meta.get("n_example") else "no features"


def stage_prepro(s: DemoSettings, threads: int, train_tsv: Path) -> Path:
    from lsp_data.db import db_name
    db = db_name(train_tsv, s.max_seq_len)
    key = {"train": fingerprint(train_tsv), "max_seq_len": s.max_seq_len}
    if stamp_matches(s.out, "prepro", key) and db_problem(db, s.max_seq_len) is None:
        say(f"prepro: skipped ({db} is there and valid)")
        return db
    cmd = [*s.python, s.repo / "prepro.py", "--corpus", train_tsv, "--max_seq_len", s.max_seq_len,
           "--workers", s.workers]
    if db.exists():
        cmd.append("--overwrite")
    run(s.out, "prepro", cmd, repo=s.repo, threads=threads, quiet=s.quiet)
    why = db_problem(db, s.max_seq_len)
    if why is not None:
        raise StageError(f"prepro: {db}: {why}")
    meta = json.loads((db / "meta.json").read_text())
    say(f"prepro: {meta['n_example']:,} features -> {db}")
    write_stamp(s.out, "prepro", key)
    return db


# ---------------------------------------------------------------------------------------------
# train (resumable)

def final_checkpoint(run_dir: Path, steps: int) -> Path:
    return weights_path(run_dir, steps)


def run_valid(run_dir: Path | None, steps: int) -> str | None:
    if run_dir is None or not run_dir.is_dir():
        return "no run folder"
    ckpt = final_checkpoint(run_dir, steps)
    if not ckpt.is_file():
        return f"no {ckpt.name}"
    log = run_dir / TRAIN_LOG
    if not log.is_file() or count_lines(log) < 2:
        return f"no {TRAIN_LOG} rows"
    return None


def resumable_step(run_dir: Path) -> int | None:
    """The newest update with a complete checkpoint (weights + resume state) in `run_dir`."""
    steps = complete_steps(run_dir)
    return steps[0] if steps else None


def new_run_dirs(train_dir: Path, before: list[str]) -> list[Path]:
    return sorted((p for p in run_dirs(train_dir) if p.name not in before), key=lambda p: p.stat().st_mtime)


def train_command(s: DemoSettings, mdir: Path, init: Path | None, db: Path, eval_tsv: Path,
                  bf16: bool, resume: Path | None) -> list:
    cmd = [*s.python, s.repo / "LSP_train.py", "--model_name_or_path", mdir,
           "--init_checkpoint", init or "None", "--train_input_file", db, "--eval_input_file", eval_tsv,
           "--output_dir", s.out / "train", "--seed", s.seed, "--max_seq_length", s.max_seq_len,
           "--train_batch_size", s.batch_size, "--gradient_accumulation_steps", 1,
           "--eval_batch_size", 16, "--learning_rate", s.lr, "--num_optim_steps", s.steps,
           "--valid_step", s.valid_step, "--warmup_steps", s.warmup_steps, "--normalize_data", "true",
           "--fp16", "false", "--bf16", str(bf16).lower(), "--lr_schedule", "noam",
           "--no_token_id", "true", "--pbar", "true",
           "--deterministic", "true"]  # the same losses whatever thread count the free cores give
    return cmd + (["--resume_from_checkpoint", resume] if resume is not None else [])


class TrainWatch:
    """Polled while LSP_train runs: reads the run folder's train_log.txt and, at every tenth of
    the run, says the measured time per update and the time left."""

    def __init__(self, train_dir: Path, before: list[str], steps: int, run_dir: Path | None = None):
        self.train_dir, self.before, self.steps, self.run_dir = train_dir, before, steps, run_dir
        self.first = None  # (time, update) of the first row this invocation saw
        self.next_mark = 0
        self.polled = 0.0

    def update(self) -> int | None:
        if self.run_dir is None:
            new = new_run_dirs(self.train_dir, self.before)
            self.run_dir = new[-1] if new else None
        log = self.run_dir / TRAIN_LOG if self.run_dir else None
        try:
            with open(log, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 400))
                last = f.read().decode("utf-8", "replace").splitlines()[-1]
            return int(last.split(",")[1]) - 1  # the log's global_step column is update + 1
        except (OSError, TypeError, ValueError, IndexError):
            return None

    def __call__(self) -> str | None:
        now = time.time()
        if now - self.polled < 1.0:
            return None
        self.polled = now
        done = self.update()
        if done is None:
            return None
        if self.first is None:
            self.first = (now, done)
            self.next_mark = done + max(1, min(5, self.steps // 20))
            return None
        if done < self.next_mark or done <= self.first[1]:
            return None
        self.next_mark = (done // max(1, self.steps // 10) + 1) * max(1, self.steps // 10)
        per_step = (now - self.first[0]) / (done - self.first[1])
        left = per_step * (self.steps - done)
        return (f"train: update {done}/{self.steps}, {per_step:.2f} s/update measured: "
                f"about {left / 60:.1f} min of training left")


def stage_train(s: DemoSettings, threads: int, bf16: bool, mdir: Path, init: Path | None, db: Path,
                eval_tsv: Path) -> Path:
    train_dir = s.out / "train"
    key = {"config": fingerprint(mdir / "config.json"), "init": str(init), "db": fingerprint(db),
           "eval": fingerprint(eval_tsv), "steps": s.steps, "batch_size": s.batch_size, "lr": s.lr,
           "warmup_steps": s.warmup_steps, "valid_step": s.valid_step, "seed": s.seed, "bf16": bf16}
    stamp = stamp_matches(s.out, "train", key) or {}
    run_dir = Path(stamp["run_dir"]) if stamp.get("run_dir") else None
    if stamp.get("done") and run_valid(run_dir, s.steps) is None:
        say(f"train: skipped ({run_dir} has {final_checkpoint(run_dir, s.steps).name})")
        return run_dir
    if run_dir is None and stamp:  # an earlier attempt was killed before it could say where it ran
        found = [d for d in new_run_dirs(train_dir, stamp.get("before", [])) if resumable_step(d)]
        run_dir = found[-1] if found else None
    step = resumable_step(run_dir) if run_dir is not None else None
    if step is not None:
        threads = stamp.get("threads", threads)  # the same threads: resumed bit for bit
        say(f"train: resuming {run_dir} from its checkpoint of update {step} ({threads} thread(s), as before)")
    else:
        run_dir = None
    train_dir.mkdir(parents=True, exist_ok=True)
    before = [p.name for p in run_dirs(train_dir)]
    write_stamp(s.out, "train", key, run_dir=run_dir, before=before, threads=threads, done=False)
    watch = TrainWatch(train_dir, before, s.steps, run_dir)
    try:
        run(s.out, "train", train_command(s, mdir, init, db, eval_tsv, bf16, run_dir), repo=s.repo,
            threads=threads, quiet=s.quiet, watch=watch)
    except (KeyboardInterrupt, StageError) as e:
        kept = keep_resumable(s.out, key, train_dir, before, run_dir or watch.run_dir, threads)
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(f" during training; {kept}") from None
        raise
    run_dir = run_dir or watch.run_dir or (new_run_dirs(train_dir, before) or [None])[-1]
    why = run_valid(run_dir, s.steps)
    if why is not None:
        raise StageError(f"train: LSP_train.py exited 0 but the run is incomplete in {run_dir or train_dir}: {why}")
    write_stamp(s.out, "train", key, run_dir=run_dir, before=before, threads=threads, done=True)
    say(f"train: run folder {run_dir}")
    return run_dir


def keep_resumable(out: Path, key: dict, train_dir: Path, before: list[str], run_dir: Path | None,
                   threads: int) -> str:
    """After a failed or interrupted training: remember the run folder when it holds a checkpoint
    to resume from, remove the new run folders that hold none. Returns what was kept."""
    new = new_run_dirs(train_dir, before)
    if run_dir is None and new:
        run_dir = new[-1]
    step = resumable_step(run_dir) if run_dir is not None else None
    for d in new:
        if d != run_dir or step is None:
            shutil.rmtree(d, ignore_errors=True)
    if step is None:
        return "no checkpoint was saved yet, so training starts again from update 0"
    write_stamp(out, "train", key, run_dir=run_dir, before=before, threads=threads, done=False)
    return f"training resumes from its checkpoint of update {step} in {run_dir}"


# ---------------------------------------------------------------------------------------------
# decode and evaluate

def stage_decode(s: DemoSettings, threads: int, name: str, flags: list, run_dir: Path, contexts: Path) -> Path:
    hyp = s.out / "decode" / f"{name}.txt"
    ckpt = final_checkpoint(run_dir, s.steps)
    n = count_lines(contexts)
    key = {"ckpt": fingerprint(ckpt), "contexts": fingerprint(contexts), "flags": flags}
    stamp = stamp_matches(s.out, f"decode_{name}", key)
    if stamp and hyp.is_file() and count_lines(hyp) == n and stamp.get("hyp") == fingerprint(hyp):
        say(f"decode {name}: skipped ({hyp} has {n} lines)")
        return hyp
    hyp.parent.mkdir(parents=True, exist_ok=True)
    run(s.out, f"decode_{name}", [*s.python, s.repo / "decode.py", "--model", ckpt, "--config",
                                  s.out / "model" / "config.json", "--input", contexts, "--output", hyp,
                                  "--batch_size", 32, *flags], repo=s.repo, threads=threads, quiet=s.quiet)
    got = count_lines(hyp) if hyp.is_file() else 0
    if got != n:
        raise StageError(f"decode {name}: {hyp} has {got} lines, expected {n} (one per test context)")
    write_stamp(s.out, f"decode_{name}", key, hyp=fingerprint(hyp))
    return hyp


def stage_eval(s: DemoSettings, threads: int, name: str, hyp: Path, refs: Path) -> dict:
    out = s.out / "eval" / f"{name}.json"
    n = count_lines(refs)
    key = {"hyp": fingerprint(hyp), "refs": fingerprint(refs), "meteor": s.meteor}
    if stamp_matches(s.out, f"eval_{name}", key):
        try:
            res = json.loads(out.read_text())
            if res.get("n_lines") == n:
                say(f"eval {name}: skipped ({out})")
                return res
        except (OSError, ValueError):
            pass
    out.parent.mkdir(parents=True, exist_ok=True)
    run(s.out, f"eval_{name}", [*s.python, "-m", "dstc", "--refs", refs, "--hyp", hyp, "--json", out,
                                *([] if s.meteor else ["--no-meteor"])],
        repo=s.repo, threads=threads, quiet=s.quiet)
    try:
        res = json.loads(out.read_text())
    except (OSError, ValueError) as e:
        raise StageError(f"eval {name}: python -m dstc wrote no readable {out} ({e})") from None
    if res.get("n_lines") != n:
        raise StageError(f"eval {name}: {out} scored {res.get('n_lines')} lines, expected {n}")
    write_stamp(s.out, f"eval_{name}", key)
    return res


# ---------------------------------------------------------------------------------------------

def cpu_choices(s: DemoSettings) -> int:
    """Threads per stage: --threads when given, else the free cores."""
    from lsp_io.cpu import free_cores
    free, cores, busy = free_cores()
    threads = s.threads or free
    how = "--threads" if s.threads else f"{cores} core(s), {busy:.1f} busy now"
    say(f"cpu: {threads} thread(s) per stage ({how})")
    return threads


def stage_precision(s: DemoSettings, threads: int, mdir: Path) -> bool:
    """bf16 or not: --bf16 when given, else a few timed updates of the demo's model in both
    precisions at the stage's thread count (gpt2_training.precision), the faster one. The choice is
    stamped, so a re-run (and a resumed training) keeps it."""
    if s.bf16 is not None:
        say(f"precision: {'bf16 autocast' if s.bf16 else 'fp32'} (--bf16 {str(s.bf16).lower()})")
        return s.bf16
    key = {"config": fingerprint(mdir / "config.json"), "batch_size": s.batch_size, "seq": s.max_seq_len,
           "threads": threads}
    stamp = stamp_matches(s.out, "precision", key)
    if stamp is None:
        res_path = s.out / "logs" / "precision.json"
        run(s.out, "precision", [*s.python, "-m", "gpt2_training.precision", mdir / "config.json", "--batch",
                                 s.batch_size, "--seq", s.max_seq_len, "--json", res_path],
            repo=s.repo, threads=threads, quiet=True)
        try:
            res = json.loads(res_path.read_text())
        except (OSError, ValueError) as e:
            raise StageError(f"precision: gpt2_training.precision wrote no readable {res_path} ({e})") from None
        write_stamp(s.out, "precision", key, result=res)
    else:
        res = stamp["result"]
    bf16 = res["choice"] == "bf16"
    say(f"precision: training in {'bf16 autocast' if bf16 else 'fp32'}, the faster here: {describe(res)} "
        f"({threads} thread(s){', measured earlier' if stamp else ''}; --bf16 true|false fixes it)")
    return bf16


def run_demo(s: DemoSettings) -> dict:
    """Every stage in order; returns what the report shows. Raises StageError on failure,
    Interrupted on Ctrl-C."""
    from .report import write_report

    t0 = time.time()
    s.out.mkdir(parents=True, exist_ok=True)
    timings = {}

    def timed(name, fn, *a):
        t = time.time()
        try:
            return fn(*a)
        except KeyboardInterrupt as e:
            raise e if isinstance(e, Interrupted) else Interrupted(f" during {name}") from None
        finally:
            timings[name] = time.time() - t

    threads = cpu_choices(s)
    files = timed("data", stage_data, s, threads)
    mdir, init = timed("model", stage_model, s)
    db = timed("prepro", stage_prepro, s, threads, files["train"])
    bf16 = timed("precision", stage_precision, s, threads, mdir)
    run_dir = timed("train", stage_train, s, threads, bf16, mdir, init, db, files["refs"])
    results = {}
    for name, flags in s.decodings.items():
        hyp = timed(f"decode_{name}", stage_decode, s, threads, name, flags, run_dir, files["contexts"])
        results[name] = (hyp, timed(f"eval_{name}", stage_eval, s, threads, name, hyp, files["refs"]))
    timings["total"] = time.time() - t0
    return write_report(s.out, run_dir, files, results, timings, settings=asdict(s) | {"threads": threads,
                                                                                       "bf16": bf16})
