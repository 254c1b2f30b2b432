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
"""
from __future__ import annotations

import csv
import itertools
import json
import os
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Iterable, Iterator

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


def read(path: str | Path, fmt: str = "auto", cols: Columns | None = None
         ) -> Iterator[Conversation | Malformed]:
    path, cols = Path(path), cols or Columns()
    if not path.exists():
        raise FormatError(f"{path}: no such file or folder")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "jsonl":
        return read_jsonl(path, cols)
    if fmt in ("csv", "tsv"):
        return read_table(path, "\t" if fmt == "tsv" else ",", cols)
    if fmt == "parlai":
        return read_parlai(path)
    if fmt == "hf":
        return read_hf(path, cols)
    raise FormatError(f"{path}: unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def _lines(path: Path) -> Iterator[tuple[str, str | Malformed]]:
    """(file:line, text) of each line; undecodable lines come as Malformed."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            where = f"{path}:{n}"
            try:
                yield where, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                yield where, Malformed(where, "undecodable", f"not UTF-8 at byte {e.start}")


def read_jsonl(path: Path, cols: Columns) -> Iterator[Conversation | Malformed]:
    for where, line in _lines(path):
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
    """Rows (file:line, {column: value}) -> one Conversation per run of equal conversation ids."""
    for _, run in groupby(rows, key=lambda r: r[1].get(cols.conversation)):
        conv = None
        for where, row in run:
            text = row.get(cols.text)
            if not isinstance(text, str):
                yield Malformed(where, "bad_row", f"no text in column {cols.text!r}")
                continue
            conv = conv or Conversation(where)
            speaker = row.get(cols.speaker)
            conv.turns.append((None if speaker is None else str(speaker), text))
        if conv is not None:
            yield conv


def read_table(path: Path, delimiter: str, cols: Columns) -> Iterator[Conversation | Malformed]:
    csv.field_size_limit(2**31 - 1)  # a long turn is not an error
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        header = reader.fieldnames or []
        missing = [c for c in (cols.conversation, cols.text) if c not in header]
        if missing:
            raise FormatError(f"{path}:1: no column {', '.join(map(repr, missing))} in the header "
                              f"({', '.join(header[:10])}); set --conv_col/--speaker_col/--text_col")

        def rows():
            start = reader.line_num + 1
            for row in reader:
                yield f"{path}:{start}", row
                start = reader.line_num + 1
        try:
            yield from group_rows(rows(), cols)
        except UnicodeDecodeError as e:
            raise FormatError(f"{path}:{reader.line_num + 1}: not UTF-8 ({e.reason})") from None


def _parlai_fields(line: str) -> dict[str, str]:
    out = {}
    for part in line.split("\t"):
        key, _, value = part.partition(":")
        out[key] = value
    return out


def _parlai_unescape(s: str) -> str:
    return s.replace("\\t", "\t").replace("\\n", "\n").replace("__PIPE__", "|")


def read_parlai(path: Path) -> Iterator[Conversation | Malformed]:
    conv = None
    for where, line in _lines(path):
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
