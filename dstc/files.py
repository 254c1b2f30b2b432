"""Reading and writing line files the way the evaluation needs it.

Lines are split on ``\\n`` only: ``str.splitlines()`` would also break on U+2028, U+0085,
... which occur inside real responses.  A final ``\\r`` (CRLF files) is dropped.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["read_lines", "write_lines", "read_refs_tsv", "check_same_length"]


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 file, each line terminated by ``\\n`` (the last one optionally).
    Raises ValueError naming the file and line when it is missing or not UTF-8."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 (byte {data[e.start]:#04x} at offset {e.start}); "
                         f"re-encode the file as UTF-8") from None
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the terminator of the last line, not an extra empty line
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def write_lines(path: str | Path, lines: list[str]) -> None:
    """Write ``'\\n'.join(lines)`` as the original did (byte-identical artifacts).

    Exception: when the last line is empty one more ``\\n`` is written, otherwise a line-wise
    reader (Python, Java's readLine, mteval via the XML) would lose it - the original's
    "empty last hypothesis" crash.
    """
    text = "\n".join(lines)
    if lines and lines[-1] == "":
        text += "\n"
    Path(path).write_text(text, encoding="utf-8")


def read_refs_tsv(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """``context \\t ref1 \\t ref2 ...`` per line -> (contexts, refs per example)."""
    contexts, refs = [], []
    for line in read_lines(path):
        cells = line.split("\t")
        contexts.append(cells[0])
        refs.append(cells[1:])
    return contexts, refs


def check_same_length(n_hyps: int, n_refs: int, hyp_name: str = "hypotheses",
                      ref_name: str = "references") -> None:
    """Raise a ValueError naming both counts when hypotheses and references differ in number."""
    if n_hyps != n_refs:
        raise ValueError(
            f"{hyp_name} has {n_hyps} lines but {ref_name} has {n_refs} examples; "
            "they must be line-aligned (one hypothesis per example, empty lines included)")
