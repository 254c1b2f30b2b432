"""The demo's stages. Each one prints what it does, runs a toolkit command line, and is skipped
when its output exists, is valid, and was made from the same inputs and settings.

Skip logic: a stage's outputs are checked for validity (a DB with meta.json and all its chunks,
a run folder with the final checkpoint, a hypothesis file with one line per test context, an
eval JSON over every line), and a stamp `stamps/<stage>.json` records the settings and the
inputs' fingerprints (size + mtime) the outputs were made from. Both must hold to skip, so
changing --steps retrains and a rebuilt train.tsv re-runs prepro, but nothing runs twice.

Failures: a command's non-zero exit stops the demo with `StageError`, whose message is the
stage's own last lines of output and the path of its full log (`logs/<stage>.log`).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The demo's default model: small enough to train for a few minutes on 2 CPU cores. The GPT-2
# vocabulary (50,257 x n_embd tied head) dominates its cost, not the 4 layers.
TINY_CONFIG = {"initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "n_ctx": 128, "n_embd": 256,
               "n_head": 4, "n_layer": 4, "n_positions": 128, "vocab_size": 50257}
SIZE_CONFIG = {"small": "configs/117M", "medium": "configs/345M", "large": "configs/762M"}

# name -> decode.py flags. Contexts are <= 64 tokens, so context + reply fit n_positions 128.
DECODINGS = {
    "greedy": ["--preset", "greedy", "--max_new_tokens", "32"],
    "sample": ["--preset", "nucleus", "--max_new_tokens", "32", "--seed", "42"],  # top_p 0.9, T 0.7
}
REDDIT_TRAIN_MONTHS = {"small": ("2005-12", "2009-12"), "full": ("2005-12", "2017-11")}
MIN_TRAIN_LINES = {"dummy": 100, "chitchat": 1000, "small": 1, "full": 1}


class StageError(RuntimeError):
    """A stage that failed; the message is what the user needs (the stage's own error, the log)."""


@dataclass
class DemoSettings:
    out: Path = Path("demo_output")
    data: str = "chitchat"               # dummy | chitchat | small | full
    model: str = "none"                  # none | small | medium | large
    init: str = "gpt2"                   # gpt2 | ft | fs (with --model)
    model_dir: Path | None = None        # local folder holding the checkpoint (no download)
    config: Path | None = None           # config.json of the model to train (default TINY_CONFIG)
    steps: int = 500
    batch_size: int = 8
    lr: float = 1e-5
    warmup_steps: int = 40
    valid_step: int | None = None        # default: steps // 4 when it divides, else steps
    workers: int = 1
    n_test: int = 200
    seed: int = 42
    max_seq_len: int = 128
    decodings: dict = field(default_factory=lambda: dict(DECODINGS))
    python: list = field(default_factory=lambda: [sys.executable])
    repo: Path = REPO
    meteor: bool = True                  # METEOR needs java; off = python -m dstc --no-meteor
    threads: int | None = None           # OMP/MKL threads of every stage (1 helps on a busy machine)
    quiet: bool = False                  # hide the stages' own output (still logged)

    def __post_init__(self):
        self.out = Path(self.out)
        self.repo = Path(self.repo)
        if self.steps < 1 or self.n_test < 1 or self.batch_size < 1:
            raise ValueError("--steps, --n_test and --batch_size must be positive")
        if self.valid_step is None:
            self.valid_step = self.steps // 4 if self.steps >= 4 and self.steps % 4 == 0 else self.steps
        if self.valid_step < 1 or self.steps % self.valid_step:
            raise ValueError(f"--steps {self.steps} must be a positive multiple of the valid step {self.valid_step}")


# ---------------------------------------------------------------------------------------------
# helpers

def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def fingerprint(path: Path) -> list | None:
    """(size, mtime_ns) of a file, or of a folder's meta.json; None when absent."""
    p = Path(path)
    if p.is_dir():
        p = p / "meta.json"
    if not p.is_file():
        return None
    st = p.stat()
    return [st.st_size, st.st_mtime_ns]


def read_stamp(s: DemoSettings, stage: str) -> dict | None:
    p = s.out / "stamps" / f"{stage}.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def write_stamp(s: DemoSettings, stage: str, key: dict, **extra) -> None:
    from lsp_io.atomic import atomic_file
    with atomic_file(s.out / "stamps" / f"{stage}.json", "w") as f:
        f.write(json.dumps({"key": key, **extra}, indent=2, default=str) + "\n")


def stamp_matches(s: DemoSettings, stage: str, key: dict) -> dict | None:
    stamp = read_stamp(s, stage)
    return stamp if stamp is not None and stamp.get("key") == json.loads(json.dumps(key, default=str)) else None


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def run(s: DemoSettings, stage: str, cmd: list, cwd: Path | None = None, env: dict | None = None) -> None:
    """Run `cmd`, streaming its output to the console and to logs/<stage>.log.
    A non-zero exit raises StageError carrying the command's last lines."""
    log_path = s.out / "logs" / f"{stage}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(c) for c in cmd]
    say(f"{stage}: $ {' '.join(cmd)}")
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if s.threads:
        full_env.update(OMP_NUM_THREADS=str(s.threads), MKL_NUM_THREADS=str(s.threads))
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(s.repo), full_env.get("PYTHONPATH")]))
    tail = bytearray()
    t0 = time.time()
    with open(log_path, "wb") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        try:
            proc = subprocess.Popen(cmd, cwd=cwd or s.repo, env=full_env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
        except OSError as e:
            raise StageError(f"{stage}: cannot run {cmd[0]}: {e}") from None
        with proc:
            while chunk := os.read(proc.stdout.fileno(), 65536):
                log.write(chunk)
                if not s.quiet:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                tail = (tail + chunk)[-8192:]
        rc = proc.wait()
    if rc != 0:
        text = tail.decode("utf-8", "replace").replace("\r", "\n")
        last = [ln for ln in text.splitlines() if ln.strip()][-6:]
        raise StageError(f"{stage} failed (exit status {rc}) after {time.time() - t0:.0f}s:\n"
                         + "\n".join("  | " + ln for ln in last) + f"\n  full log: {log_path}")
    say(f"{stage}: done in {time.time() - t0:.0f}s")


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
    d = s.out / "data"
    return {"train": d / "train.tsv", "contexts": d / "test.contexts.tsv", "refs": d / "test.refs.tsv",
            "meta": d / "data.json"}


def data_valid(s: DemoSettings, files: dict[str, Path]) -> str | None:
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
    if fingerprint(files["train"]) is None or files["train"].stat().st_size == 0:
        return "empty train.tsv"
    return None


def stage_data(s: DemoSettings) -> dict[str, Path]:
    files = data_files(s)
    key = {"data": s.data, "n_test": s.n_test, "seed": s.seed, "max_seq_len": s.max_seq_len}
    stamp = stamp_matches(s, "data", key)
    if stamp and data_valid(s, files) is None and stamp.get("train") == fingerprint(files["train"]):
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
    elif s.data in ("small", "full"):
        stats = reddit_data(s, files)
    else:
        raise StageError(f"data: unknown --data {s.data!r} (dummy, chitchat, small or full)")
    n = check_train_tsv(files["train"], MIN_TRAIN_LINES[s.data])
    say(f"data: {n:,} training lines, {stats['test_examples']} test contexts "
        f"in {time.time() - t0:.0f}s -> {files['train'].parent}")
    write_stamp(s, "data", key, train=fingerprint(files["train"]), stats=stats)
    return files


def reddit_dumps_missing(s: DemoSettings, size: str, folder: Path) -> list[str]:
    first, last = REDDIT_TRAIN_MONTHS[size]
    y, m = map(int, first.split("-"))
    missing = []
    while f"{y:04d}-{m:02d}" <= last:
        for kind in ("RS", "RC"):
            name = f"{kind}_{y:04d}-{m:02d}"
            if not any((folder / (name + ext)).is_file() for ext in (".zst", ".bz2", ".xz", ".gz", "")):
                missing.append(name + ".zst")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return missing


def reddit_data(s: DemoSettings, files: dict[str, Path]) -> dict:
    """`make -C reddit_extractor SIZE=.. train`, its exit status checked (the original ignored it
    and trained on an empty file), then a seeded held-out split of its train.tsv."""
    raw_dir = (s.out / "data" / "reddit").resolve()
    dumps = s.repo / "reddit_extractor" / "data" / "reddit"
    say(f"data: Reddit extraction SIZE={s.data} (dumps in {dumps})")
    try:
        run(s, "data", ["make", "-C", s.repo / "reddit_extractor", f"SIZE={s.data}", f"DATA={raw_dir}",
                        f"WORKERS={s.workers}", f"PYTHON={s.python[0]}", "train"])
    except StageError as e:
        missing = reddit_dumps_missing(s, s.data, dumps)
        hint = ""
        if missing:
            hint = (f"\n  {len(missing)} Reddit dump file(s) are missing from {dumps} (the Makefile's S folder; "
                    f"set S=DIR to use another), e.g. {', '.join(missing[:4])}. pushshift is offline: "
                    f"fetch the RS_/RC_ monthly dumps {' .. '.join(REDDIT_TRAIN_MONTHS[s.data])} from an archive "
                    f"mirror, and the keys tar reddit_extractor/data/keys-{s.data}.tar.")
        raise StageError(f"{e}{hint}") from None
    raw = raw_dir / "train.tsv"
    check_train_tsv(raw, 1)
    return split_held_out(raw, files, s.n_test, s.seed)


def split_held_out(raw: Path, files: dict[str, Path], n_test: int, seed: int) -> dict:
    """Stream `raw` into train.tsv, holding out about n_test lines chosen by a seeded hash
    (one pass, constant memory: the full set is ~27 GB)."""
    from lsp_io.atomic import atomic_file
    from lsp_data.contexts import strip_weight
    total = count_lines(raw)
    rate = max(1, total // max(1, 2 * n_test))  # hold out ~1/rate of the lines, stop at n_test
    tests, kept = [], 0
    with open(raw, encoding="utf-8", errors="replace") as src, atomic_file(files["train"], "w") as out:
        for i, line in enumerate(src):
            parts = line.rstrip("\r\n").split("\t")
            if (len(tests) < n_test and len(parts) == 2 and parts[1].startswith("1.0 ")
                    and zlib.crc32(f"{seed}:{i}".encode()) % rate == 0):
                ctx = " EOS ".join(strip_weight(t) for t in parts[0].split(" EOS "))
                tests.append((f"reddit:{i + 1}", ctx, strip_weight(parts[1])))
                continue
            out.write(line)
            kept += 1
    if not tests:
        raise StageError(f"{raw}: no line could be held out for testing")
    with atomic_file(files["contexts"], "w") as f:
        f.writelines(f"{k}\t{c}\n" for k, c, _ in tests)
    with atomic_file(files["refs"], "w") as f:
        f.writelines(f"{c}\t{r}\n" for _, c, r in tests)
    stats = {"source": str(raw), "train_lines": kept, "test_examples": len(tests), "seed": seed}
    with atomic_file(files["meta"], "w") as f:
        f.write(json.dumps(stats, indent=2) + "\n")
    return stats


# ---------------------------------------------------------------------------------------------
# model config and initial checkpoint

def stage_model(s: DemoSettings) -> tuple[Path, Path | None]:
    """(model folder with config.json + tokenizer files, init checkpoint or None)."""
    from lsp_io.atomic import atomic_file
    from lsp_model.tokenizer import load_tokenizer, save_tokenizer

    mdir = s.out / "model"
    if s.model == "none":
        if s.config is not None:
            try:
                cfg = json.loads(Path(s.config).read_text())
            except (OSError, ValueError) as e:
                raise StageError(f"--config {s.config}: cannot read a config.json ({e})") from None
        else:
            cfg = TINY_CONFIG
        init = None
    else:
        from lsp_model.download import DownloadError, fetch_model_files
        cfg = json.loads((s.repo / SIZE_CONFIG[s.model] / "config.json").read_text())
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

def db_valid(db: Path, max_seq_len: int) -> str | None:
    try:
        meta = json.loads((db / "meta.json").read_text())
    except (OSError, ValueError):
        return "no readable meta.json"
    n, chunk = meta.get("n_example", 0), meta.get("chunk_size", 0)
    if not n or not chunk:
        return "no features"
    if meta.get("max_seq_len") != max_seq_len:
        return f"max_seq_len {meta.get('max_seq_len')} != {max_seq_len}"
    chunks = meta.get("chunks")
    if chunks is not None and len(chunks) != math.ceil(n / chunk):
        return f"{len(chunks)} chunks, expected {math.ceil(n / chunk)}"
    if not any(p.name.startswith("db") for p in db.iterdir()):
        return "no shelve files"
    return None


def stage_prepro(s: DemoSettings, train_tsv: Path) -> Path:
    db = train_tsv.with_name(f"{train_tsv.stem}.{s.max_seq_len}len.db")
    key = {"train": fingerprint(train_tsv), "max_seq_len": s.max_seq_len}
    if stamp_matches(s, "prepro", key) and db_valid(db, s.max_seq_len) is None:
        say(f"prepro: skipped ({db} is there and valid)")
        return db
    cmd = [*s.python, s.repo / "prepro.py", "--corpus", train_tsv, "--max_seq_len", s.max_seq_len,
           "--workers", s.workers]
    if db.exists():
        cmd.append("--overwrite")
    run(s, "prepro", cmd)
    why = db_valid(db, s.max_seq_len)
    if why is not None:
        raise StageError(f"prepro: {db}: {why}")
    meta = json.loads((db / "meta.json").read_text())
    say(f"prepro: {meta['n_example']:,} features -> {db}")
    write_stamp(s, "prepro", key)
    return db


# ---------------------------------------------------------------------------------------------
# train

def run_valid(run_dir: Path | None, steps: int) -> str | None:
    if run_dir is None or not run_dir.is_dir():
        return "no run folder"
    if not (run_dir / f"GP2-pretrain-step-{steps}.pkl").is_file():
        return f"no GP2-pretrain-step-{steps}.pkl"
    log = run_dir / "train_log.txt"
    if not log.is_file() or count_lines(log) < 2:
        return "no train_log.txt rows"
    return None


def find_run_dir(output_dir: Path, before: set[str]) -> Path | None:
    new = [p for p in output_dir.glob("GPT2.*") if p.is_dir() and p.name not in before]
    return max(new, key=lambda p: p.stat().st_mtime) if new else None


def stage_train(s: DemoSettings, mdir: Path, init: Path | None, db: Path, eval_tsv: Path) -> Path:
    out = s.out / "train"
    key = {"config": fingerprint(mdir / "config.json"), "init": str(init), "db": fingerprint(db),
           "eval": fingerprint(eval_tsv), "steps": s.steps, "batch_size": s.batch_size, "lr": s.lr,
           "warmup_steps": s.warmup_steps, "valid_step": s.valid_step, "seed": s.seed}
    stamp = stamp_matches(s, "train", key)
    if stamp and run_valid(Path(stamp["run_dir"]), s.steps) is None:
        say(f"train: skipped ({stamp['run_dir']} has GP2-pretrain-step-{s.steps}.pkl)")
        return Path(stamp["run_dir"])
    out.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in out.glob("GPT2.*")}
    cmd = [*s.python, s.repo / "LSP_train.py", "--model_name_or_path", mdir,
           "--init_checkpoint", init or "None", "--train_input_file", db, "--eval_input_file", eval_tsv,
           "--output_dir", out, "--seed", s.seed, "--max_seq_length", s.max_seq_len,
           "--train_batch_size", s.batch_size, "--gradient_accumulation_steps", 1,
           "--eval_batch_size", 16, "--learning_rate", s.lr, "--num_optim_steps", s.steps,
           "--valid_step", s.valid_step, "--warmup_steps", s.warmup_steps, "--normalize_data", "true",
           "--fp16", "false", "--lr_schedule", "noam", "--no_token_id", "true", "--pbar", "true"]
    run(s, "train", cmd)
    run_dir = find_run_dir(out, before)
    why = run_valid(run_dir, s.steps)
    if why is not None:
        raise StageError(f"train: LSP_train.py exited 0 but the run is incomplete in {run_dir or out}: {why}")
    write_stamp(s, "train", key, run_dir=str(run_dir))
    say(f"train: run folder {run_dir}")
    return run_dir


# ---------------------------------------------------------------------------------------------
# decode and evaluate

def stage_decode(s: DemoSettings, name: str, flags: list, run_dir: Path, contexts: Path) -> Path:
    hyp = s.out / "decode" / f"{name}.txt"
    ckpt = run_dir / f"GP2-pretrain-step-{s.steps}.pkl"
    n = count_lines(contexts)
    key = {"ckpt": fingerprint(ckpt), "contexts": fingerprint(contexts), "flags": flags}
    stamp = stamp_matches(s, f"decode_{name}", key)
    if stamp and hyp.is_file() and count_lines(hyp) == n and stamp.get("hyp") == fingerprint(hyp):
        say(f"decode {name}: skipped ({hyp} has {n} lines)")
        return hyp
    hyp.parent.mkdir(parents=True, exist_ok=True)
    run(s, f"decode_{name}", [*s.python, s.repo / "decode.py", "--model", ckpt, "--config",
                              s.out / "model" / "config.json", "--input", contexts, "--output", hyp,
                              "--batch_size", 32, *flags])
    got = count_lines(hyp) if hyp.is_file() else 0
    if got != n:
        raise StageError(f"decode {name}: {hyp} has {got} lines, expected {n} (one per test context)")
    write_stamp(s, f"decode_{name}", key, hyp=fingerprint(hyp))
    return hyp


def stage_eval(s: DemoSettings, name: str, hyp: Path, refs: Path) -> dict:
    out = s.out / "eval" / f"{name}.json"
    n = count_lines(refs)
    key = {"hyp": fingerprint(hyp), "refs": fingerprint(refs), "meteor": s.meteor}
    if stamp_matches(s, f"eval_{name}", key):
        try:
            res = json.loads(out.read_text())
            if res.get("n_lines") == n:
                say(f"eval {name}: skipped ({out})")
                return res
        except (OSError, ValueError):
            pass
    out.parent.mkdir(parents=True, exist_ok=True)
    run(s, f"eval_{name}", [*s.python, "-m", "dstc", "--refs", refs, "--hyp", hyp, "--json", out,
                            *([] if s.meteor else ["--no-meteor"])])
    try:
        res = json.loads(out.read_text())
    except (OSError, ValueError) as e:
        raise StageError(f"eval {name}: python -m dstc wrote no readable {out} ({e})") from None
    if res.get("n_lines") != n:
        raise StageError(f"eval {name}: {out} scored {res.get('n_lines')} lines, expected {n}")
    write_stamp(s, f"eval_{name}", key)
    return res


# ---------------------------------------------------------------------------------------------

def run_demo(s: DemoSettings) -> dict:
    """Every stage in order; returns what the report shows. Raises StageError on failure."""
    from .report import write_report

    t0 = time.time()
    s.out.mkdir(parents=True, exist_ok=True)
    timings = {}

    def timed(name, fn, *a):
        t = time.time()
        r = fn(*a)
        timings[name] = time.time() - t
        return r

    files = timed("data", stage_data, s)
    mdir, init = timed("model", stage_model, s)
    db = timed("prepro", stage_prepro, s, files["train"])
    run_dir = timed("train", stage_train, s, mdir, init, db, files["refs"])
    results = {}
    for name, flags in s.decodings.items():
        hyp = timed(f"decode_{name}", stage_decode, s, name, flags, run_dir, files["contexts"])
        results[name] = (hyp, timed(f"eval_{name}", stage_eval, s, name, hyp, files["refs"]))
    timings["total"] = time.time() - t0
    return write_report(s.out, run_dir, files, results, timings, settings=asdict(s))

