"""TSV corpus -> feature DB, feature for feature what the original prepro.py stored.

    python prepro.py --corpus data/train.tsv --max_seq_len 128 [--reverse] [--two_turn]
                     [--tokenizer DIR] [--workers N] [--overwrite] [--strict]
    python prepro.py --dump data/train.128len.db > features.jsonl

Lines are parsed and tokenized in batches, by `workers` processes (spawned, one tokenizer
thread each) or in-process for workers=1; results come back in order and conv_ids are numbered
here, so the DB is byte-identical whatever the worker count. Malformed lines are counted by
reason and reported (or, with strict, stop the run naming file and line).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import json
import multiprocessing as mp
import os
import sys
from pathlib import Path

from tqdm import tqdm

from .db import ChunkWriter, DBError, FORMAT_VERSION, db_name, dump, write_meta
from .features import feature_tails, id_fragments
from .tsv import MALFORMED, SKIPPED, LineError, decode_line, iter_raw_lines, line_ref, parse_line
from lsp_model.defaults import MAX_SEQ_LEN
from lsp_io.cli import command, prog_name

BATCH_LINES = 2048  # lines per tokenizer call / worker task
MAX_LISTED = 1000   # line numbers kept per reason in report.json (counts are always complete)


class PreproError(ValueError):
    """Bad input to prepro; the message names the file (and line)."""


# ------------------------------------------------------------------- per-batch work (workers)

def process_lines(raws: list[bytes], tok, max_len: int, reverse: bool, two_turn: bool, eos: int):
    """Parse, tokenize and featurize a batch of lines.

    Returns one (reason, message, weights, turn_lens, items) per line: reason None for a line
    with features, items its (input_len, feature JSON tail) pairs. weights/turn_lens are the
    parsed turns before --reverse, after the zero-weight target was dropped (None if malformed).
    """
    parsed, unique, seen = [], {}, {}
    for raw in raws:
        try:
            weights, turns = parse_line(decode_line(raw), seen)
        except LineError as e:
            parsed.append((e.reason, str(e)))
            continue
        # Each line repeats its conversation's earlier turns: encode every distinct text once.
        parsed.append((weights, [unique.setdefault(t, len(unique)) for t in turns]))
    ids = [e.ids for e in tok.encode_batch_fast(list(unique), add_special_tokens=False)] if unique else []
    frags, all_lens = id_fragments(ids), [len(x) for x in ids]
    out = []
    for p in parsed:
        if isinstance(p[0], str):
            out.append((p[0], p[1], None, None, []))
            continue
        weights, slots = p
        lens = [all_lens[i] for i in slots]
        if reverse:
            weights, slots = weights[::-1], slots[::-1]
        if two_turn:
            weights, slots = weights[:2], slots[:2]
        if len(weights) < 2:
            out.append(("lt2turns", None, p[0], lens, []))
            continue
        # the feature JSON is written from the turns' id fragments: no per-token Python loop
        items = feature_tails([frags[i] for i in slots], [all_lens[i] for i in slots], weights, max_len, eos)
        out.append((None if items else "no_features", None, p[0], lens, items))
    return out


_WORKER: dict = {}


def _init_worker(tok_json: str, max_len: int, reverse: bool, two_turn: bool, eos: int):
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # parallelism comes from the processes
    gc.disable()  # only acyclic lists and strings here: the cycle collector is pure overhead
    from tokenizers import Tokenizer
    _WORKER.update(tok=Tokenizer.from_str(tok_json), max_len=max_len, reverse=reverse,
                   two_turn=two_turn, eos=eos)


def _work(raws: list[bytes]):
    # weights/turn_lens are for tests: not worth pickling back
    return [(reason, msg, None, None, items) for reason, msg, _, _, items in process_lines(raws, **_WORKER)]


def _batches(corpus: Path, size: int):
    nums, raws = [], []
    for logical, physical, raw in iter_raw_lines(corpus):
        nums.append((logical, physical))
        raws.append(raw)
        if len(raws) == size:
            yield nums, raws
            nums, raws = [], []
    if raws:
        yield nums, raws


def _results(batches, workers: int, tok, max_len, reverse, two_turn, eos):
    """(nums, raws, results) per batch, in input order, at most a few batches in flight."""
    if workers <= 1:
        for nums, raws in batches:
            yield nums, raws, process_lines(raws, tok, max_len, reverse, two_turn, eos)
        return
    ctx = mp.get_context("spawn")  # no fork of a process whose tokenizer threads already ran
    with ctx.Pool(workers, _init_worker, (tok.to_str(), max_len, reverse, two_turn, eos)) as pool:
        pending = collections.deque()
        for nums, raws in batches:
            pending.append((nums, raws, pool.apply_async(_work, (raws,))))
            if len(pending) > 2 * workers:
                nums0, raws0, r = pending.popleft()
                yield nums0, raws0, r.get()
        while pending:
            nums0, raws0, r = pending.popleft()
            yield nums0, raws0, r.get()


# ------------------------------------------------------------------------------- the build

def _new_report(corpus: Path) -> dict:
    return {"corpus": str(corpus), "lines": 0, "features": 0, "chunks": 0,
            "counts": {r: 0 for r in MALFORMED + SKIPPED}, "skipped": {r: [] for r in MALFORMED + SKIPPED}}


def summary(report: dict) -> str:
    """One paragraph: totals, then per reason the count and the first line numbers."""
    n_skip = sum(report["counts"].values())
    lines = [f"prepro: {report['corpus']}: {report['lines']:,} lines -> {report['features']:,} features "
             f"in {report['chunks']} chunk(s); {n_skip:,} lines gave no feature"]
    for reason, n in report["counts"].items():
        if n:
            first = ", ".join(str(x["line"]) for x in report["skipped"][reason][:5])
            kind = "malformed" if reason in MALFORMED else "skipped"
            lines.append(f"  {kind} {reason}: {n:,} (lines {first}{', ...' if n > 5 else ''})")
    return "\n".join(lines)


@contextlib.contextmanager
def _no_cycle_gc():
    """Millions of small acyclic lists: the cycle collector only costs time (10-20%)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def build_db(corpus, out=None, max_seq_len: int = MAX_SEQ_LEN, chunk_size: int = 65536, reverse: bool = False,
             two_turn: bool = False, tokenizer=None, workers: int = 1, overwrite: bool = False,
             strict: bool = False, progress: bool = True, batch_lines: int = BATCH_LINES):
    """Build the feature DB of a TSV corpus. Returns (db_path, report).

    tokenizer: a tokenizers.Tokenizer, a tokenizer/model directory, or None for GPT-2.
    The DB is built in a hidden temp folder and renamed into place only when complete.
    """
    from lsp_model.tokenizer import eos_id, load_tokenizer, tokenizer_identity
    from lsp_io.atomic import atomic_dir
    from tokenizers import Tokenizer

    corpus = Path(corpus)
    if not corpus.is_file():
        raise PreproError(f"corpus not found: {corpus}")
    if corpus.stat().st_size == 0:
        raise PreproError(f"corpus is empty: {corpus}")
    if max_seq_len < 1 or chunk_size < 1:
        raise PreproError(f"max_seq_len and chunk_size must be >= 1 (got {max_seq_len}, {chunk_size})")
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer)
    try:
        eos = eos_id(tok)
    except ValueError:
        raise PreproError(f"tokenizer {tokenizer or 'gpt2'}: no <|endoftext|> token, which DialoGPT "
                          "uses as the turn separator") from None
    out = Path(out) if out is not None else db_name(corpus, max_seq_len, reverse, two_turn)
    if out.exists() and not overwrite:
        raise PreproError(f"DB already exists: {out} (pass --overwrite to replace it)")

    report = _new_report(corpus)
    bar = tqdm(total=corpus.stat().st_size, unit="B", unit_scale=True, desc="prepro",
               disable=not progress, mininterval=1.0)
    with atomic_dir(out, overwrite=overwrite) as tmp, _no_cycle_gc():
        writer = ChunkWriter(tmp, chunk_size)
        try:
            for nums, raws, results in _results(_batches(corpus, batch_lines), workers, tok,
                                                max_seq_len, reverse, two_turn, eos):
                for (logical, physical), (reason, msg, *_) in zip(nums, results):
                    if reason is not None:
                        if strict and reason in MALFORMED:
                            raise PreproError(f"{line_ref(corpus, logical, physical)}: malformed line ({reason}): {msg}")
                        report["counts"][reason] += 1
                        if len(report["skipped"][reason]) < MAX_LISTED:
                            report["skipped"][reason].append(
                                {"line": physical, "logical_line": logical, "message": msg})
                writer.add_lines([r[-1] for r in results])
                report["lines"] = nums[-1][0]
                bar.update(sum(len(r) + 1 for r in raws))
            chunks = writer.close()
        except BaseException:
            writer.shelf.close()
            raise
        finally:
            bar.close()
        report.update(features=writer.n_example, chunks=len(chunks))
        if writer.n_example == 0:
            raise PreproError(f"{corpus}: no features from {report['lines']} lines\n{summary(report)}")
        write_meta(tmp, {"n_example": writer.n_example, "chunk_size": chunk_size,
                         "max_seq_len": max_seq_len, "reverse": reverse, "two_turn": two_turn,
                         "format_version": FORMAT_VERSION, "tokenizer_identity": tokenizer_identity(tok),
                         "corpus": corpus.name, "lines": report["lines"], "skipped": report["counts"],
                         "chunks": chunks})
        with open(tmp / "report.json", "w") as f:
            json.dump(report, f, indent=1)
    return out, report


# ------------------------------------------------------------------------------------- CLI

@command("prepro.py")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=prog_name("prepro.py"), description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", help="training TSV: w turn EOS w turn ...<TAB>w response")
    p.add_argument("--chunk_size", type=int, default=65536)
    p.add_argument("--max_seq_len", type=int, default=MAX_SEQ_LEN)
    p.add_argument("--reverse", action="store_true", help="reverse turn order (MMI backward model)")
    p.add_argument("--two_turn", action="store_true", help="keep only the first two turns")
    p.add_argument("--tokenizer", default=None, help="tokenizer or model directory (default: GPT-2)")
    p.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 1))),
                   help="tokenizer processes (output is identical for any count)")
    p.add_argument("--out", default=None, help="DB folder (default: the original's name next to the corpus)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DB")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed line")
    p.add_argument("--dump", metavar="DB_DIR", help="print every feature of a DB as JSON lines and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        if args.dump:
            dump(args.dump, sys.stdout)
            return 0
        if not args.corpus:
            p.error("--corpus is required")
        db, report = build_db(args.corpus, args.out, args.max_seq_len, args.chunk_size, args.reverse,
                              args.two_turn, args.tokenizer, args.workers, args.overwrite, args.strict,
                              progress=not args.quiet)
    except (PreproError, DBError, FileNotFoundError, FileExistsError) as e:
        print(f"prepro.py: error: {e}", file=sys.stderr)
        return 2
    print(summary(report), file=sys.stderr)
    print(f"prepro: wrote {db}", file=sys.stderr)
    return 0
