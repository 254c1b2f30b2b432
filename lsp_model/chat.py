"""Dialogue contexts as token ids: reading context files, encoding turns as in training, and a
chat history trimmed to a token budget.

A context is encoded as in training: turn_1 EOS turn_2 EOS ... turn_n EOS (EOS = 50256 for GPT-2),
so the model continues with the next turn. Contexts that do not fit are cut from the LEFT (the
oldest tokens go). In chat, whole old turns are dropped first, which keeps the history short:
long histories make DialoGPT's replies shrink and repeat (DialoGPT #84).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from lsp_data.tsv import LineError, split_weight

from .generate import PRESETS, GenConfig, check_config
from .tokenizer import decode, encode_batch

TURN_SEP = " EOS "
FORMATS = ("auto", "dstc", "tsv")
_KEY = re.compile(r"^\S+$")


# ---------------------------------------------------------------------------------------------
# context files


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


def encode_context(tok, turns: list[str], eos: int) -> list[int]:
    """turn_1 EOS ... turn_n EOS; an empty context (one empty turn) is just [EOS]."""
    ids = []
    for t in encode_batch(tok, turns):
        ids += t + [eos]
    return ids


def fit_context(ids: list[int], max_len: int) -> tuple[list[int], bool]:
    """Cut from the left to at most max_len tokens; returns (ids, was_cut)."""
    return (ids[-max_len:], True) if len(ids) > max_len else (ids, False)


def clean_hypothesis(text: str) -> str:
    """One output line: newlines, carriage returns and tabs inside a reply become spaces."""
    return " ".join(re.sub(r"[\r\n\t\v\f\x85\u2028\u2029]", " ", text).split(" ")).strip()


# ---------------------------------------------------------------------------------------------
# chat history


@dataclass
class History:
    """The conversation as token-id turns, alternating user and bot, oldest first."""
    turns: list[list[int]] = field(default_factory=list)

    def add(self, ids: list[int]) -> None:
        self.turns.append(list(ids))

    def reset(self) -> None:
        self.turns.clear()


def history_context(turns: list[list[int]], eos: int, budget: int) -> tuple[list[int], int]:
    """The newest turns that fit `budget` tokens (each turn costs len + 1 for its EOS), joined
    as in training. If even the newest turn is too long it is cut from the left.
    Returns (context ids, number of old turns left out)."""
    ids: list[int] = []
    kept = 0
    for t in reversed(turns):
        if len(ids) + len(t) + 1 > budget:
            break
        ids = t + [eos] + ids
        kept += 1
    if kept == 0 and turns:
        ids = (turns[-1] + [eos])[-budget:]
        kept = 1
    return ids, len(turns) - kept


# ---------------------------------------------------------------------------------------------
# chat commands

HELP = """commands:
  /reset              forget the conversation
  /set NAME VALUE     change a decoding setting, e.g. /set top_p 0.9, /set do_sample true
  /preset NAME        load named settings ({presets})
  /settings           show the current settings
  /history            show the turns the model will see
  /help               this text
  /quit               leave (also Ctrl-D)""".format(presets=", ".join(PRESETS))


def _parse_value(name: str, value: str, current):
    if isinstance(current, bool):
        if value.lower() in ("true", "1", "yes", "on"):
            return True
        if value.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{name} takes true or false, not {value!r}")
    try:
        return type(current)(value)
    except ValueError:
        raise ValueError(f"{name} takes a {type(current).__name__}, not {value!r}") from None


def settings_text(cfg: GenConfig, extra: dict | None = None) -> str:
    items = dataclasses.asdict(cfg) | (extra or {})
    return "\n".join(f"  {k} = {v}" for k, v in items.items())


def run_command(line: str, cfg: GenConfig, history: History, tok=None, extra: dict | None = None
                ) -> tuple[str, GenConfig, bool]:
    """Handle one /command. Returns (message to print, new settings, quit?).
    `extra` holds non-GenConfig settings (e.g. history_budget, mmi_lambda) and is updated in place."""
    parts = line.strip().split()
    cmd, args = parts[0].lower(), parts[1:]
    extra = extra if extra is not None else {}
    if cmd in ("/quit", "/exit", "/q"):
        return "bye", cfg, True
    if cmd == "/help":
        return HELP, cfg, False
    if cmd == "/reset":
        history.reset()
        return "history cleared", cfg, False
    if cmd == "/settings":
        return settings_text(cfg, extra), cfg, False
    if cmd == "/history":
        if tok is None:
            return f"{len(history.turns)} turns", cfg, False
        return "\n".join(f"  {i + 1}: {decode(tok, t)}" for i, t in enumerate(history.turns)) or "  (empty)", cfg, False
    if cmd == "/preset":
        if len(args) != 1 or args[0] not in PRESETS:
            return f"usage: /preset NAME with NAME one of {', '.join(PRESETS)}", cfg, False
        new = dataclasses.replace(cfg, **PRESETS[args[0]])
        return f"preset {args[0]}:\n" + settings_text(new), new, False
    if cmd == "/set":
        if len(args) != 2:
            return "usage: /set NAME VALUE (see /settings for names)", cfg, False
        name, value = args
        try:
            if name in extra:
                extra[name] = _parse_value(name, value, extra[name])
                return f"{name} = {extra[name]}", cfg, False
            if name not in {f.name for f in dataclasses.fields(GenConfig)}:
                return f"unknown setting {name!r}; see /settings", cfg, False
            new = dataclasses.replace(cfg, **{name: _parse_value(name, value, getattr(cfg, name))})
            check_config(new)
        except ValueError as e:
            return f"not changed: {e}", cfg, False
        return f"{name} = {getattr(new, name)}", new, False
    return f"unknown command {cmd}; /help lists them", cfg, False
