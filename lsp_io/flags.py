"""The one vocabulary for boolean flag values, shared by every command line and the chat /set.

A superset of the original's (LSP_train's `boolean_string` took true/false only; reddit.py's
`type=bool` any string), so every original command line still parses; anything else is
rejected with the accepted words named.
"""
from __future__ import annotations

import argparse

TRUE_WORDS = ("true", "t", "yes", "y", "on", "1")
FALSE_WORDS = ("false", "f", "no", "n", "off", "0")


class BadBoolean(argparse.ArgumentTypeError, ValueError):
    """argparse prints its message as is ("argument --fp16: ..."); callers may catch ValueError."""


def parse_bool(text) -> bool:
    """True/False for a flag value (any case); BadBoolean naming the accepted words otherwise."""
    if isinstance(text, bool):
        return text
    v = str(text).strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    raise BadBoolean(f"expected true or false (also {'/'.join(TRUE_WORDS[1:])} or "
                     f"{'/'.join(FALSE_WORDS[1:])}), got {text!r}")


parse_bool.__name__ = "boolean"  # argparse names the type in its own messages
