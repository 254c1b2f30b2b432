"""Dialogue contexts as token ids, and the chat: encoding turns as in training, a history
trimmed to a token budget, and the chat's /commands. (The data package reads context files.)

A context is encoded as in training: turn_1 EOS turn_2 EOS ... turn_n EOS (EOS = 50256 for GPT-2),
so the model continues with the next turn. Contexts that do not fit are cut from the LEFT (the
oldest tokens go). In chat, whole old turns are dropped first, which keeps the history short:
long histories make DialoGPT's replies shrink and repeat (DialoGPT #84).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from .decoding import candidates_config
from .generate import generate
from .generation_args import PRESETS, GenConfig, check_config, parse_setting, switch_preset
from .tokenizer import decode, encode_batch


# ---------------------------------------------------------------------------------------------
# context encoding


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


def reply(model, eos: int, vocab: int, cfg: GenConfig, history: History, budget: int, turn: int,
          num_candidates: int = 10, reranker=None) -> tuple[list[int], int]:
    """The bot's reply to the history (MMI-reranked when a reranker is given and `cfg` draws
    several candidates); returns (reply ids, number of old turns left out)."""
    max_ctx = min(budget, model.config.n_positions - cfg.max_new_tokens)
    ctx, dropped = history_context(history.turns, eos, max_ctx)
    many = candidates_config(cfg, num_candidates) if reranker is not None else None
    hyps = generate(model, [ctx], many or cfg, eos, vocab, indices=[turn])[0]
    if many is not None:  # greedy: one candidate, nothing to rerank
        hyps = reranker([history.turns[dropped:]], [hyps])[0]
    return hyps[0]["ids"], dropped


# ---------------------------------------------------------------------------------------------
# chat commands

HELP = """commands:
  /reset              forget the conversation
  /set NAME VALUE     change a decoding setting, e.g. /set top_p 0.9, /set do_sample true
  /preset NAME        replace the decoding settings by a named set ({presets})
  /settings           show the current settings
  /history            show the turns the model will see
  /help               this text
  /quit               leave (also Ctrl-D)""".format(presets=", ".join(PRESETS))


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
        new = switch_preset(cfg, args[0])
        return f"preset {args[0]}:\n" + settings_text(new), new, False
    if cmd == "/set":
        if len(args) != 2:
            return "usage: /set NAME VALUE (see /settings for names)", cfg, False
        name, value = args
        try:
            if name in extra:
                extra[name] = parse_setting(name, value, extra[name])
                return f"{name} = {extra[name]}", cfg, False
            if name not in {f.name for f in dataclasses.fields(GenConfig)}:
                return f"unknown setting {name!r}; see /settings", cfg, False
            new = dataclasses.replace(cfg, **{name: parse_setting(name, value, getattr(cfg, name))})
            check_config(new)
        except ValueError as e:
            return f"not changed: {e}", cfg, False
        return f"{name} = {getattr(new, name)}", new, False
    return f"unknown command {cmd}; /help lists them", cfg, False
