"""Decoding input files: one dialogue context per line, as DSTC key files or DialoGPT TSV.

  dstc  key<TAB>context[<TAB>...]   every line's first column is one token (e.g. a sha224 key)
  tsv   context[<TAB>response...]   "0.0 "/"1.0 " turn weights are stripped as prepro does
Turns inside a context are joined by " EOS ", as in the training TSV.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .tsv import TURN_SEP, LineError, split_weight
FORMATS = ("auto", "dstc", "tsv")
_KEY = re.compile(r"^\S+$")


@dataclass
class Context:
    line: int                 # 1-based line in the input file
    key: str | None           # DSTC key, None for TSV
    turns: list[str]


def strip_weight(turn: str) -> str:
    """A turn's text without its leading weight, exactly as prepro parses it (a turn that starts
    with a bare number loses it, as in prepro); an empty turn stays empty."""
    try:
        return split_weight(turn)[1]
    except LineError:
        return ""


def split_turns(context: str, weights: bool) -> list[str]:
    turns = [t.strip() for t in context.split(TURN_SEP)]
    return [strip_weight(t) for t in turns] if weights else turns


def detect_format(lines: list[str]) -> str:
    """`dstc` when every non-empty line has >= 2 tab-separated columns and the first column is
    one whitespace-free token (a key such as a sha224 hash); otherwise `tsv` (DialoGPT TSV: the
    first column is the context, with optional 0.0/1.0 turn weights; later columns ignored)."""
    rows = [ln.split("\t") for ln in lines if ln.strip()]
    if rows and all(len(r) >= 2 and _KEY.match(r[0]) for r in rows):
        return "dstc"
    return "tsv"


def read_contexts(path: str | Path, fmt: str = "auto") -> tuple[list[Context], str]:
    """Contexts of a DSTC (`key<TAB>context[<TAB>...]`) or DialoGPT TSV (`context[<TAB>response]`)
    file, one per line, empty lines included (an empty context). Returns (contexts, format)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; choose from {', '.join(FORMATS)}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not valid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it is not an extra empty context
    lines = [ln.rstrip("\r") for ln in lines]
    if fmt == "auto":
        fmt = detect_format(lines)
    out = []
    for i, ln in enumerate(lines, 1):
        if fmt == "dstc":
            cols = ln.split("\t")
            if len(cols) < 2 or not _KEY.match(cols[0]):
                raise ValueError(f"{path}:{i}: expected 'key<TAB>context' (DSTC format), got {ln[:60]!r}")
            out.append(Context(i, cols[0], split_turns(cols[1], weights=False)))
        else:
            out.append(Context(i, None, split_turns(ln.split("\t")[0], weights=True)))
    return out, fmt
