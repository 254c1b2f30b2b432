"""Conversations -> DialoGPT training TSV, validation TSV and multi-reference test files.

Turns. Text is whitespace-collapsed (tabs and newlines become spaces) and a stand-alone `EOS` is
lower-cased, because prepro splits contexts on ` EOS `. A speaker's consecutive turns are joined
into one turn, empty turns dropped. System messages are dropped, or kept as context-only turns
with `system="context"`; tool/function messages are dropped.

Targets. `train_on`: `all` (every turn after the first), `assistant` (the turns of the speaker
named `assistant`), `last` (the last turn), or `auto` (`assistant` where the conversation has
such a speaker, as OpenAI messages and ParlAI files do, else `all`). The first turn never is a
target: it has no context.

Windows, as the paper builds its instances. Every target gives one training line: the target
(weight 1.0) after as many preceding turns as fit (weight 0.0, context only), newest first, so
that sum(turn tokens + 1) <= max_seq_len rounded down to a multiple of 8 (prepro pads features to
a multiple of 8 and the loaders drop any longer than max_seq_len; so every line gives exactly
one feature, and each target is trained once, with its longest context). A target that alone
does not fit, or that has no context turn that fits, is dropped.

Filters (optional, after the paper's extractor, docs/own-data.md): `length` (a turn of more than
`max_words` words can be neither target nor context: the context starts after it; a target of
fewer than `min_words` words is dropped), `url` (a turn with a URL, likewise), `repeat` (a target
with a word three times in a row, or that repeats a turn of its context verbatim, is dropped).

Split. A conversation goes to valid or test when a seeded hash of its text falls under
`valid_frac` / `test_frac` (one pass, no state; identical conversations land together), while
those sides have room (`max_valid` / `max_test` examples; later ones go to train). Exact
duplicate lines are removed in train (a 64-bit digest, 8 bytes per distinct line, SeenSet) and
valid/test examples that also occur in train are dropped.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from lsp_io.atomic import atomic_file
from lsp_data.datafolder import FILES, write_heldout, write_summary
from lsp_data.formats import ASSISTANT, Conversation, Malformed
from lsp_data.tsv import format_eval_line, format_line
from lsp_model.defaults import MAX_SEQ_LEN, SEED

TRAIN_ON = ("auto", "all", "assistant", "last")
FILTERS = ("length", "url", "repeat")
_WS = re.compile(r"\s+")
_EOS_WORD = re.compile(r"(?<!\S)EOS(?!\S)")
_URL = re.compile(r"https?://|www\.\S|\S\.(com|org|net|io)\b", re.IGNORECASE)
_TRIPLE = re.compile(r"(?<!\S)(\S+) \1 \1(?!\S)")
_HIST_EDGES = (8, 16, 32, 64, 128, 256, 512, 1024)
_MAX_EXAMPLES_SHOWN = 10


class PrepareError(ValueError):
    """Input that cannot be converted; the message names the file (and line)."""


def clean_text(text: str) -> str:
    return _EOS_WORD.sub("eos", _WS.sub(" ", text).strip())


def split_value(key: str, seed: int) -> float:
    """A conversation's place in [0, 1) for the seeded split: the same key and seed always land
    on the same side, whatever else is in the corpus or in which order it comes."""
    h = hashlib.blake2b(key.encode("utf-8"), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(h, "little") / 2.0 ** 64


def digest(turns: list[str]) -> int:
    h = hashlib.blake2b("\x1f".join(turns).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "little")


class SeenSet:
    """Exact set of 64-bit digests at 8 bytes each: sorted numpy runs, merged like a binary
    counter (at most log2(n) runs), queried a batch at a time with searchsorted."""

    def __init__(self):
        self.runs: list[np.ndarray] = []

    def __contains__(self, d: int) -> bool:
        return bool(self.contains(np.array([d], dtype=np.uint64))[0])

    def contains(self, ds: np.ndarray) -> np.ndarray:
        hit = np.zeros(len(ds), dtype=bool)
        for r in self.runs:
            i = np.minimum(np.searchsorted(r, ds), len(r) - 1)
            hit |= r[i] == ds
        return hit

    def add_new(self, ds: list[int]) -> np.ndarray:
        """Add a batch; returns the mask of entries new to the set (the first of in-batch repeats)."""
        arr = np.array(ds, dtype=np.uint64)
        new = ~self.contains(arr)
        _, first = np.unique(arr, return_index=True)
        once = np.zeros(len(arr), dtype=bool)
        once[first] = True
        new &= once
        run = np.sort(arr[new])
        while self.runs and len(self.runs[-1]) <= len(run):
            run = np.sort(np.concatenate([self.runs.pop(), run]))  # disjoint: no entry repeats
        if len(run):
            self.runs.append(run)
        return new

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)


@dataclass
class Options:
    train_on: str = "auto"
    assistant: str = ASSISTANT
    system: str = "drop"                      # drop | context
    max_seq_len: int = MAX_SEQ_LEN
    max_context_turns: int | None = None
    filters: tuple[str, ...] = ()
    min_words: int = 2
    max_words: int = 30
    dedup: bool = True
    valid_frac: float = 0.02
    test_frac: float = 0.02
    max_valid: int = 2000
    max_test: int = 1000
    seed: int = SEED
    strict: bool = False
    batch: int = 512                          # conversations tokenized per call


@dataclass
class Summary:
    conversations: int = 0
    turns: int = 0
    targets: int = 0
    lines: dict = field(default_factory=lambda: {"train": 0, "valid": 0, "test": 0})
    conversations_by_split: dict = field(default_factory=lambda: {"train": 0, "valid": 0, "test": 0})
    test_contexts: int = 0
    dropped: dict = field(default_factory=dict)
    malformed: dict = field(default_factory=dict)   # reason -> {"count", "first": [file:line: msg]}
    token_histogram: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    conversations_per_s: float = 0.0

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def bad(self, m: Malformed) -> None:
        entry = self.malformed.setdefault(m.reason, {"count": 0, "first": []})
        entry["count"] += 1
        if len(entry["first"]) < _MAX_EXAMPLES_SHOWN:
            entry["first"].append(f"{m.where}: {m.message}")

    def histogram(self, n_tokens: int) -> None:
        edge = next((e for e in _HIST_EDGES if n_tokens <= e), f">{_HIST_EDGES[-1]}")
        key = f"<={edge}" if isinstance(edge, int) else edge
        self.token_histogram[key] = self.token_histogram.get(key, 0) + 1


def normalize(conv: Conversation, opts: Options, s: Summary) -> tuple[list[str], list[bool]]:
    """(turn texts, trainable flags) of one conversation, after the rules of the module doc."""
    merged: list[list] = []  # [speaker, text]
    for speaker, raw in conv.turns:
        if speaker in ("tool", "function"):
            s.drop("tool_turn")
            continue
        if speaker == "system" and opts.system == "drop":
            s.drop("system_turn")
            continue
        text = clean_text(raw)
        if not text:
            s.drop("empty_turn")
            continue
        if merged and speaker is not None and merged[-1][0] == speaker:
            merged[-1][1] += " " + text
        else:
            merged.append([speaker, text])
    texts = [t for _, t in merged]
    mode = opts.train_on
    if mode == "auto":
        mode = "assistant" if any(sp == opts.assistant for sp, _ in merged) else "all"
    trainable = []
    for i, (speaker, _) in enumerate(merged):
        ok = i > 0 and speaker != "system"
        if mode == "assistant":
            ok = ok and speaker == opts.assistant
        elif mode == "last":
            ok = ok and i == len(merged) - 1
        trainable.append(ok)
    return texts, trainable


def turn_rejected(text: str, opts: Options) -> str | None:
    """The filter that bars a turn from being target or context, if any."""
    if "length" in opts.filters and len(text.split()) > opts.max_words:
        return "long_turn"
    if "url" in opts.filters and _URL.search(text):
        return "url"
    return None


def target_rejected(text: str, context: list[str], opts: Options) -> str | None:
    if "length" in opts.filters and len(text.split()) < opts.min_words:
        return "short_target"
    if "repeat" in opts.filters and (_TRIPLE.search(text) or text in context):
        return "repeat"
    return None


def budget(max_seq_len: int) -> int:
    """Token budget sum(len + 1) of a line: max_seq_len rounded down to a multiple of 8."""
    return max_seq_len - max_seq_len % 8


def windows(texts: list[str], lens: list[int], trainable: list[bool], opts: Options, s: Summary
            ) -> Iterator[tuple[int, int, int]]:
    """(first context turn, target, tokens) of each kept target; drops are counted in `s`."""
    limit = budget(opts.max_seq_len)
    barred = [turn_rejected(t, opts) for t in texts] if opts.filters else [None] * len(texts)
    for i, ok in enumerate(trainable):
        if not ok:
            continue
        s.targets += 1
        if barred[i]:
            s.drop(barred[i])
            continue
        total, lo = lens[i] + 1, i
        if total > limit:
            s.drop("target_too_long")
            continue
        while lo > 0 and not barred[lo - 1] and total + lens[lo - 1] + 1 <= limit and (
                opts.max_context_turns is None or i - lo < opts.max_context_turns):
            lo -= 1
            total += lens[lo] + 1
        if lo == i:
            s.drop("no_context")
            continue
        reason = target_rejected(texts[i], texts[lo:i], opts) if opts.filters else None
        if reason:
            s.drop(reason)
            continue
        yield lo, i, total


@dataclass
class HeldOut:
    """Validation lines and test contexts, kept in memory (at most max_valid / max_test)."""
    valid: list = field(default_factory=list)   # (digest, context, ref)
    test: dict = field(default_factory=dict)    # context tuple -> {"key", "refs": {digest: ref}}
    n_test: int = 0


def batches(records: Iterable, size: int) -> Iterator[list]:
    batch = []
    for r in records:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _conversations(records: Iterable, opts: Options, s: Summary) -> Iterator[tuple[str, list, list]]:
    """(file:line, texts, trainable) of every usable conversation; malformed records counted
    (or, with `strict`, an error)."""
    for rec in records:
        if isinstance(rec, Malformed):
            if opts.strict:
                raise PrepareError(f"{rec.where}: malformed record ({rec.reason}): {rec.message}")
            s.bad(rec)
            continue
        s.conversations += 1
        texts, trainable = normalize(rec, opts, s)
        s.turns += len(texts)
        if not any(trainable):
            s.drop("conversation_without_target")
            continue
        yield rec.where, texts, trainable


def _side(texts: list[str], opts: Options, held: HeldOut) -> str:
    u = split_value("\x1f".join(texts), opts.seed)
    if u < opts.test_frac and held.n_test < opts.max_test:
        return "test"
    if u < opts.test_frac + opts.valid_frac and len(held.valid) < opts.max_valid:
        return "valid"
    return "train"


def example_key(where: str) -> str:
    """`file.jsonl:17` -> a one-token key (decode.py's DSTC form), traceable to the record."""
    return _WS.sub("_", Path(where).name)


def _hold(side: str, key: str, context: list[str], ref: str, d: int, held: HeldOut) -> None:
    if side == "valid":
        held.valid.append((d, context, ref))
        return
    entry = held.test.setdefault(tuple(context), {"key": key, "refs": {}})
    if d not in entry["refs"]:
        entry["refs"][d] = ref
        held.n_test += 1


def _process(batch: list, out, tok, opts: Options, s: Summary, held: HeldOut, seen: SeenSet | None) -> None:
    """Tokenize a batch of conversations (lengths only), cut windows, split, dedup, write train."""
    flat = [t for _, texts, _ in batch for t in texts]
    lens = [len(e.ids) for e in tok.encode_batch(flat, add_special_tokens=False)]
    lines, digests, sizes, pos = [], [], [], 0
    for where, texts, trainable in batch:
        conv_lens, pos = lens[pos:pos + len(texts)], pos + len(texts)
        side = _side(texts, opts, held)
        s.conversations_by_split[side] += 1
        for lo, i, total in windows(texts, conv_lens, trainable, opts, s):
            d = digest(texts[lo:i + 1])
            if side != "train":
                _hold(side, f"{example_key(where)}:{i}", texts[lo:i], texts[i], d, held)
                continue
            lines.append(format_line(texts[lo:i + 1], [0.0] * (i - lo) + [1.0]))
            digests.append(d)
            sizes.append(total)
    keep = seen.add_new(digests) if seen is not None else np.ones(len(lines), dtype=bool)
    s.drop("duplicate", int(len(lines) - keep.sum()))
    for line, n, k in zip(lines, sizes, keep):
        if k:
            out.write(line + "\n")
            s.lines["train"] += 1
            s.histogram(n)


def _drop_leaked(held: HeldOut, seen: SeenSet | None, s: Summary) -> None:
    """Valid/test examples that are also train lines, or repeat a valid line, are dropped."""
    if seen is None:
        return
    valid, mine = [], set()
    for d, ctx, ref in held.valid:
        if d in seen or d in mine:
            s.drop("valid_duplicate")
        else:
            mine.add(d)
            valid.append((d, ctx, ref))
    held.valid = valid
    for ctx in list(held.test):
        refs = held.test[ctx]["refs"]
        for d in [d for d in refs if d in seen]:
            del refs[d]
            s.drop("test_duplicate")
        if not refs:
            del held.test[ctx]


def prepare(records: Iterable, out_dir: str | Path, opts: Options | None = None, tokenizer=None) -> dict:
    """Stream `records` (lsp_data.formats readers) into train.tsv, valid.tsv, test.contexts.tsv,
    test.refs.tsv and data.json under `out_dir`; returns the summary written to data.json."""
    from lsp_model.tokenizer import load_tokenizer
    opts = opts or Options()
    unknown = set(opts.filters) - set(FILTERS)
    if opts.train_on not in TRAIN_ON or unknown or opts.system not in ("drop", "context"):
        raise PrepareError(f"bad options: train_on={opts.train_on!r}, filters={sorted(unknown)}, "
                           f"system={opts.system!r}")
    if not (0 <= opts.valid_frac and 0 <= opts.test_frac and opts.valid_frac + opts.test_frac < 1):
        raise PrepareError(f"--valid_frac {opts.valid_frac} and --test_frac {opts.test_frac} must be >= 0 "
                           f"and leave some conversations for training")
    if opts.max_seq_len < 16:
        raise PrepareError(f"--max_seq_len {opts.max_seq_len} is too small (>= 16)")
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    s, held, seen = Summary(), HeldOut(), SeenSet() if opts.dedup else None
    out, t0, c0 = Path(out_dir), time.time(), time.process_time()
    with atomic_file(out / FILES["train"], "w") as f:
        for batch in batches(_conversations(records, opts, s), opts.batch):
            _process(batch, f, tok, opts, s, held, seen)
        if s.lines["train"] == 0:
            reasons = ", ".join(f"{k} {v}" for k, v in s.dropped.items()) or "none"
            bad = sum(m["count"] for m in s.malformed.values())
            hint = (f" (no turn of speaker {opts.assistant!r}: set --assistant_speaker, or --train_on all)"
                    if opts.train_on == "assistant" and s.targets == 0 else "")
            raise PrepareError(f"no training line: {s.conversations} conversations, {s.targets} targets, "
                               f"{bad} malformed records; dropped: {reasons}{hint}")
    _drop_leaked(held, seen, s)
    with atomic_file(out / FILES["valid"], "w") as f:
        f.writelines(format_eval_line(ctx, [ref]) + "\n" for _, ctx, ref in held.valid)
    examples = [(e["key"], list(ctx), list(e["refs"].values())) for ctx, e in held.test.items()]
    write_heldout(out, examples)
    s.lines["valid"], s.test_contexts = len(held.valid), len(examples)
    s.lines["test"] = sum(len(refs) for _, _, refs in examples)
    if len(held.valid) < 64:
        s.notes.append(f"valid.tsv has {len(held.valid)} lines: LSP_train drops a partial eval batch, so "
                       f"keep --eval_batch_size <= that (or raise --valid_frac)")
    if not examples:
        s.notes.append("no test contexts: raise --test_frac to get a test set")
    order = [f"<={e}" for e in _HIST_EDGES] + [f">{_HIST_EDGES[-1]}"]
    s.token_histogram = {k: s.token_histogram[k] for k in order if k in s.token_histogram}
    s.seconds, s.cpu_seconds = round(time.time() - t0, 3), round(time.process_time() - c0, 3)
    s.conversations_per_s = round(s.conversations / max(s.seconds, 1e-9))
    summary = {**asdict(s), "options": asdict(opts)}
    write_summary(out, summary)
    return summary


def format_summary(s: dict, out_dir: str | Path) -> str:
    lines = [f"{s['conversations']:,} conversations, {s['turns']:,} turns, {s['targets']:,} targets "
             f"in {s['seconds']:.1f}s ({s['cpu_seconds']:.1f} CPU-s; {s['conversations_per_s']:,.0f} conversations/s)",
             f"  train {s['lines']['train']:,} lines  valid {s['lines']['valid']:,} lines  "
             f"test {s['test_contexts']:,} contexts / {s['lines']['test']:,} refs   -> {out_dir}",
             f"  conversations by split: {s['conversations_by_split']}"]
    if s["dropped"]:
        lines.append("  dropped: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s["dropped"].items())))
    for reason, m in s["malformed"].items():
        lines.append(f"  malformed ({reason}): {m['count']:,}, e.g. " + "; ".join(m["first"][:3]))
    lines.append("  tokens per train line: " + ", ".join(f"{k} {v:,}" for k, v in s["token_histogram"].items()))
    lines += [f"  note: {n}" for n in s["notes"]]
    return "\n".join(lines)
