"""DialoGPT training TSV: line splitting and the per-line rules of the original prepro.py.

A line is `w turn EOS w turn ...<TAB>w response`. Every turn may start with a weight: its first
whitespace token, if Python's float() accepts it (so `NaN`, `inf`, `1e3`, `2` all count and are
removed from the text); otherwise the weight is 1.0 and the token stays.

The original read the corpus with Python's open(): universal newlines, so a lone \\r also ends a
line. We read bytes and split the same way, which lets an undecodable line be counted and skipped
instead of killing the run, and keeps both line numbers: `logical` (as open() iterated, the
numbering of the golden files) and `physical` (\\n-separated, what editors and `sed -n` show).
"""
from __future__ import annotations

import os
from typing import Iterator

from lsp_io.turns import TURN_SEP  # noqa: F401 (the TSV format's names are taken from here)

# Reasons a line is malformed. The original raised (and printed) a ValueError for all but
# `undecodable`, which crashed it; we keep its messages so reports can be compared.
MALFORMED = ("blank_line", "missing_tab", "empty_field", "extra_tab", "empty_turn", "undecodable")
# Lines that are well formed but give no feature (skipped silently by the original).
SKIPPED = ("lt2turns", "no_features")


class LineError(ValueError):
    """A malformed line. `reason` is one of MALFORMED; str() is the original's message."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def iter_raw_lines(path: str | os.PathLike) -> Iterator[tuple[int, int, bytes]]:
    """Yield (logical_no, physical_no, line_bytes) without the line terminator, 1-based.

    Splitting bytes on \\r\\n, \\r and \\n is exactly universal-newline splitting for UTF-8
    text: those bytes never occur inside a multi-byte character.
    """
    logical = 0
    with open(path, "rb") as f:
        for physical, raw in enumerate(f, 1):
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if b"\r" in raw:
                for piece in raw.split(b"\r"):
                    logical += 1
                    yield logical, physical, piece
            else:
                logical += 1
                yield logical, physical, raw


def line_ref(path: str | os.PathLike, logical: int, physical: int) -> str:
    """`path:N` for messages, N counting lines as this reader splits them (\\r\\n, \\n and a
    lone \\r each end one), so a file with lone-CR line breaks gets real line numbers, not 1
    for every line. Where that differs from counting \\n only (`sed -n`), both are given."""
    if logical == physical:
        return f"{path}:{logical}"
    return f"{path}:{logical} (line {physical} counting only \\n)"


def decode_line(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LineError("undecodable", f"'utf-8' codec can't decode byte 0x{raw[e.start]:02x} "
                                       f"in position {e.start}: {e.reason}") from None


def split_weight(turn: str) -> tuple[float, str]:
    """(weight, text) of one turn: the original `_norm_text`."""
    toks = turn.split()
    if not toks:
        raise LineError("empty_turn", "not enough values to unpack (expected at least 1, got 0)")
    try:
        return float(toks[0]), " ".join(toks[1:])
    except ValueError:
        return 1.0, " ".join(toks)


def parse_line(line: str, seen: dict | None = None) -> tuple[list[float], list[str]]:
    """Weights and texts of the turns of one line, the target left out when its weight is 0.

    Raises LineError for a malformed line, with the message the original printed. `seen`, a
    dict kept over a batch of lines, caches split_weight per raw turn (lines repeat turns).
    """
    fields = line.strip().split("\t")
    if len(fields) != 2:
        if len(fields) > 2:
            raise LineError("extra_tab", "too many values to unpack (expected 2)")
        reason = ("blank_line" if not fields[0] else "empty_field" if "\t" in line else "missing_tab")
        raise LineError(reason, "not enough values to unpack (expected 2, got 1)")
    srcs, tgt = fields
    if seen is None:
        seen = {}
    turns = []
    for turn in srcs.split(TURN_SEP):
        wt = seen.get(turn)
        if wt is None:
            wt = seen[turn] = split_weight(turn)
        turns.append(wt)
    w, text = split_weight(tgt)
    if w != 0:  # a zero-weight target is dropped, so its line often ends with < 2 turns
        turns.append((w, text))
    return [w for w, _ in turns], [t for _, t in turns]


# ---------------------------------------------------------------------------------------------
# writers: the one place that spells the training and eval line shapes (readers above)

def format_line(turns: list[str], weights: list[float]) -> str:
    """A training line `w turn EOS w turn ...<TAB>w response` (the last turn is the response).

    Every turn gets an explicit weight, so a turn that starts with a number keeps it. Texts must
    be clean (lsp_data.conversations.clean_text): no tab, newline or ` EOS `."""
    parts = [f"{w:.1f} {t}" for w, t in zip(weights, turns)]
    return TURN_SEP.join(parts[:-1]) + "\t" + parts[-1]


def format_eval_line(context: list[str], refs: list[str]) -> str:
    """`turn EOS turn ...<TAB>ref[<TAB>ref ...]`, no weights: LSP_train's --eval_input_file and
    the multi-reference refs.tsv of `python -m dstc`."""
    return TURN_SEP.join(context) + "".join("\t" + r for r in refs)
