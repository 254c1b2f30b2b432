"""Readers for dialogue files: JSONL, CSV/TSV, ParlAI text, and what `datasets` reads locally.

Each reader is a generator of `Conversation` (speaker-tagged turns, in order) and `Malformed`
(a record that cannot be read, with `file:line`), so a file of any size streams through in
constant memory. What a turn means for training (assistant or not, system prompt) is decided
later, by lsp_data.conversations; the readers only recover who said what.

Record shapes (JSONL lines, `datasets` rows):
  ["hi", "hello"]                                          turns, speakers alternating
  [{"speaker": "a", "text": "hi"}, ...]                    (also `role`/`content`)
  {"messages": [{"role": "user", "content": "hi"}, ...]}   OpenAI chat; content may be a list
                                                           of {"type": "text", "text": ...} parts
  {"turns": [...]}                                         either list form under a key
Rows per turn (CSV/TSV, `datasets` rows with a text column): conversation id, speaker and text
columns; the rows of one conversation are contiguous and in order.
ParlAI text: `text:...<TAB>labels:...[<TAB>episode_done:True]` per line; `text` is the partner,
the first of the `|`-separated `labels` (or `eval_labels`) the model's reply; `\\n`, `\\t` and
`__PIPE__` are unescaped as ParlAI's str_to_msg does; an episode ends at `episode_done:True`.
Line-based files are read in bounded memory (lsp_data.bounded: a record over `limit` bytes, a
NUL byte, a bad byte, an unclosed CSV quote are reported by physical line; a BOM is dropped), and
a turn whose text holds a NUL character (a JSON "\\u0000") is malformed too.
"""
from __future__ import annotations

import glob
import itertools
import json
import os
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Iterable, Iterator

from .bounded import DEFAULT_LIMIT, Bad, csv_records, text_lines

FORMATS = ("auto", "jsonl", "csv", "tsv", "parlai", "hf")
ASSISTANT = "assistant"  # the speaker name of the turns trained on by `--train_on assistant`
_HF_FILES = (".parquet", ".arrow", ".json")  # read through `datasets` unless --format says otherwise
_HF_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".jsonl": "json", ".csv": "csv"}


class FormatError(ValueError):
    """An input that cannot be read at all (not a single record): the message names the file."""


@dataclass
class Columns:
    """Where the fields are: keys of a JSON record / turn, or columns of a table."""
    messages: str = "messages"
    turns: str = "turns"
    speaker: str = "speaker"
    text: str = "text"
    conversation: str = "conversation_id"


@dataclass
class Conversation:
    where: str                                    # file:line of the record's first line
    turns: list[tuple[str | None, str]] = field(default_factory=list)  # (speaker, raw text)


@dataclass
class Malformed:
    where: str
    reason: str
    message: str


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "hf"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    if suffix in _HF_FILES:
        return "hf"
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    if first.startswith("text:") or "\tlabels:" in first:
        return "parlai"
    if first.lstrip().startswith(("{", "[")):
        return "jsonl"
    raise FormatError(f"{path}: cannot tell the format from the name or first line; pass --format")


def expand_inputs(patterns: list[str]) -> list[Path]:
    """--input values in order: a path as given, or a glob's matches (sorted); none may be empty."""
    out = []
    for pat in patterns:
        if Path(pat).exists() or not glob.has_magic(pat):
            out.append(Path(pat))
            continue
        found = sorted(glob.glob(pat))
        if not found:
            raise FormatError(f"{pat}: no file matches")
        out += map(Path, found)
    return out


def read(path: str | Path, fmt: str = "auto", cols: Columns | None = None, limit: int = DEFAULT_LIMIT
         ) -> Iterator[Conversation | Malformed]:
    path, cols = Path(path), cols or Columns()
    if not path.exists():
        raise FormatError(f"{path}: no such file or folder")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "jsonl":
        return read_jsonl(path, cols, limit)
    if fmt in ("csv", "tsv"):
        return read_table(path, "\t" if fmt == "tsv" else ",", cols, limit)
    if fmt == "parlai":
        return read_parlai(path, limit)
    if fmt == "hf":
        return read_hf(path, cols)
    raise FormatError(f"{path}: unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def _malformed(path: Path, bad: Bad) -> Malformed:
    return Malformed(f"{path}:{bad.no}", bad.reason, bad.message)


def _lines(path: Path, limit: int) -> Iterator[tuple[str, str | Malformed]]:
    """(file:line, text) of each physical line; lines that cannot be used come as Malformed."""
    for no, text in text_lines(path, limit):
        yield f"{path}:{no}", _malformed(path, text) if isinstance(text, Bad) else text


def read_jsonl(path: Path, cols: Columns, limit: int = DEFAULT_LIMIT) -> Iterator[Conversation | Malformed]:
    for where, line in _lines(path, limit):
        if isinstance(line, Malformed):
            yield line
        elif line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield Malformed(where, "bad_json", f"{e.msg} at column {e.colno}")
                continue
            yield parse_record(obj, where, cols)


def _text(value) -> str | None:
    """A turn's text: a string, or OpenAI content parts (the text parts, joined)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        texts = [p.get("text") for p in value if p.get("type", "text") == "text"]
        if all(isinstance(t, str) for t in texts):
            return " ".join(texts)
    return None


def parse_turns(items, where: str, cols: Columns) -> Conversation | Malformed:
    if not isinstance(items, list):
        return Malformed(where, "bad_record", f"expected a list of turns, got {type(items).__name__}")
    conv = Conversation(where)
    for i, item in enumerate(items):
        if isinstance(item, str):
            speaker, text = ("a", "b")[i % 2], item  # plain strings alternate between two people
        elif isinstance(item, dict):
            speaker = item.get("role", item.get(cols.speaker))
            text = _text(item.get("content", item.get(cols.text)))
            if text is None and item.get("content") is None and item.get("tool_calls"):
                text = ""  # an assistant tool call carries no dialogue text: an empty turn
        else:
            text = None
        if text is None:
            return Malformed(where, "bad_turn", f"turn {i}: expected a string or an object with "
                                                f"{cols.text!r}/'content' text, got {str(item)[:60]!r}")
        if "\x00" in text:
            return Malformed(where, "nul_byte", f"turn {i}: a NUL character in the text")
        conv.turns.append((None if speaker is None else str(speaker), text))
    return conv


def parse_record(obj, where: str, cols: Columns) -> Conversation | Malformed:
    if isinstance(obj, dict):
        for key in (cols.messages, cols.turns):
            if key in obj:
                return parse_turns(obj[key], where, cols)
        return Malformed(where, "bad_record", f"no {cols.messages!r} or {cols.turns!r} field "
                                              f"(keys: {', '.join(list(obj)[:8])})")
    return parse_turns(obj, where, cols)


def group_rows(rows: Iterable[tuple[str, dict]], cols: Columns) -> Iterator[Conversation | Malformed]:
    """Rows (file:line, {column: value} or Malformed) -> one Conversation per run of equal
    conversation ids; a Malformed row is passed on and does not split its conversation."""
    last = [None]

    def key(r):
        if isinstance(r[1], dict):
            last[0] = r[1].get(cols.conversation)
        return last[0]
    for _, run in groupby(rows, key=key):
        conv = None
        for where, row in run:
            if isinstance(row, Malformed):
                yield row
                continue
            text = row.get(cols.text)
            if not isinstance(text, str):
                yield Malformed(where, "bad_row", f"no text in column {cols.text!r}")
                continue
            if "\x00" in text:
                yield Malformed(where, "nul_byte", f"a NUL character in column {cols.text!r}")
                continue
            conv = conv or Conversation(where)
            speaker = row.get(cols.speaker)
            conv.turns.append((None if speaker is None else str(speaker), text))
        if conv is not None:
            yield conv


def read_table(path: Path, delimiter: str, cols: Columns, limit: int = DEFAULT_LIMIT
               ) -> Iterator[Conversation | Malformed]:
    records, early, header = csv_records(path, delimiter, limit), [], []
    for _, fields in records:
        if not isinstance(fields, Bad):
            header = fields
            break
        early.append(_malformed(path, fields))  # before the header: counted like any other
    missing = [c for c in (cols.conversation, cols.text) if c not in header]
    if missing:
        raise FormatError(f"{path}:1: no column {', '.join(map(repr, missing))} in the header "
                          f"({', '.join(header[:10])}); set --conv_col/--speaker_col/--text_col")

    def rows():
        yield from ((m.where, m) for m in early)
        for no, fields in records:
            if isinstance(fields, Bad):
                yield f"{path}:{no}", _malformed(path, fields)
            else:
                yield f"{path}:{no}", dict(zip(header, fields))
    yield from group_rows(rows(), cols)


def _parlai_fields(line: str) -> dict[str, str]:
    out = {}
    for part in line.split("\t"):
        key, _, value = part.partition(":")
        out[key] = value
    return out


def _parlai_unescape(s: str) -> str:
    return s.replace("\\t", "\t").replace("\\n", "\n").replace("__PIPE__", "|")


def read_parlai(path: Path, limit: int = DEFAULT_LIMIT) -> Iterator[Conversation | Malformed]:
    conv = None
    for where, line in _lines(path, limit):
        if isinstance(line, Malformed):
            yield line
            continue
        if not line.strip():
            continue
        f = _parlai_fields(line)
        if "text" not in f and "labels" not in f and "eval_labels" not in f:
            yield Malformed(where, "bad_parlai", "no text: or labels: field")
            continue
        conv = conv or Conversation(where)
        if f.get("text"):
            conv.turns.append(("user", _parlai_unescape(f["text"])))
        labels = f.get("labels", f.get("eval_labels"))
        if labels:
            conv.turns.append((ASSISTANT, _parlai_unescape(labels.split("|")[0])))
        if f.get("episode_done", "").strip().lower() in ("true", "1"):
            yield conv
            conv = None
    if conv is not None:
        yield conv  # a file may end without episode_done


def _hf_rows(path: Path) -> tuple[Iterator[dict], list[str]]:
    """(rows, column names) of a save_to_disk folder (memory-mapped) or a data file (streamed:
    no cache copy). `datasets` is imported here: it is an optional extra."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local files only, never the hub
    try:
        import datasets
    except ImportError:
        raise FormatError(f"{path}: reading it needs the `datasets` package "
                          f"(pip install 'dialogpt[datasets]')") from None
    datasets.disable_progress_bars()
    try:
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                raise FormatError(f"{path}: a DatasetDict with splits {', '.join(ds)}; pass one split's folder")
            return iter(ds), list(ds.column_names)
        builder = _HF_BUILDERS.get(path.suffix.lower(), path.suffix.lower().lstrip("."))
        rows = iter(datasets.load_dataset(builder, data_files=str(path), split="train", streaming=True))
        first = next(rows, None)
    except FormatError:
        raise
    except Exception as e:  # datasets raises many types; the message is what the user needs
        raise FormatError(f"{path}: datasets cannot load it ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if first is None:
        raise FormatError(f"{path}: no rows")
    return itertools.chain([first], rows), list(first)


def read_hf(path: Path, cols: Columns) -> Iterator[Conversation | Malformed]:
    """A `save_to_disk` folder, or local parquet/arrow/json/csv files, through `datasets`."""
    rows, names = _hf_rows(path)
    numbered = ((f"{path}:{i + 1}", row) for i, row in enumerate(rows))
    if cols.messages in names or cols.turns in names:
        return (parse_record(row, where, cols) for where, row in numbered)
    if cols.text in names and cols.conversation in names:
        return group_rows(numbered, cols)
    raise FormatError(f"{path}: no column {cols.messages!r} or {cols.turns!r} (or {cols.text!r} with "
                      f"{cols.conversation!r}; columns: {', '.join(names)}); "
                      f"set --messages_col/--turns_col/--text_col/--conv_col")
