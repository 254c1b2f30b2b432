"""rank.py's input: one context and its candidates per line, as JSONL or as TSV.

  JSONL  {"context": [turn, ...], "hyps": [reply, ...]}     (a string context is split as in TSV)
  TSV    context<TAB>hyp1<TAB>hyp2 ...                       turns joined by " EOS " (this project's
                                                             TSVs) or "<|endoftext|>" (DialogRPT's)
The format is JSONL when the first line starts with "{". Every bad line is one error naming the
file, the line and the field; a blank line is an error too (outputs are line-aligned).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lsp_data.contexts import TURN_SEP
from lsp_model.tokenizer import EOS_TOKEN


@dataclass
class Case:
    line: int
    turns: list[str]
    hyps: list[str]


def split_context(text: str) -> list[str]:
    """Turns of a one-string context: split on " EOS " and on DialogRPT's "<|endoftext|>"."""
    return [t for part in text.split(TURN_SEP) for t in part.split(EOS_TOKEN)]


def _json_case(where: str, line: str) -> tuple[list[str], list[str]]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict) or "context" not in obj or "hyps" not in obj:
        raise ValueError(f'{where}: expected {{"context": [turn, ...], "hyps": [reply, ...]}}')
    ctx, hyps = obj["context"], obj["hyps"]
    if isinstance(ctx, str):
        ctx = split_context(ctx)
    if not isinstance(ctx, list) or not all(isinstance(t, str) for t in ctx):
        raise ValueError(f'{where}: "context" must be a list of strings')
    if not ctx:
        raise ValueError(f'{where}: "context" is empty (a context without turns is [""])')
    if not isinstance(hyps, list) or not all(isinstance(h, str) for h in hyps):
        raise ValueError(f'{where}: "hyps" must be a list of strings')
    return ctx, hyps


def read_cases(path: str | Path) -> list[Case]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not valid UTF-8") from None
    if lines and lines[-1] == "":
        lines.pop()
    is_json = bool(lines) and lines[0].lstrip().startswith("{")
    out = []
    for i, ln in enumerate((ln.rstrip("\r") for ln in lines), 1):
        where = f"{path}:{i}"
        if not ln.strip():
            raise ValueError(f"{where}: blank line (one context per line)")
        if is_json:
            ctx, hyps = _json_case(where, ln)
        else:
            cols = ln.split("\t")
            ctx, hyps = split_context(cols[0]), cols[1:]
        if not hyps:
            raise ValueError(f"{where}: " + ('"hyps" is empty: no candidate to rank' if is_json else
                                             "no candidate (expected context<TAB>hyp1<TAB>hyp2 ...)"))
        out.append(Case(i, ctx, hyps))
    if not out:
        raise ValueError(f"{path}: no line to rank")
    return out
