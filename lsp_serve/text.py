"""A reply's text as its tokens arrive: the deltas a stream may send now.

Byte-level BPE splits characters across tokens, so the text of a prefix can end in U+FFFD
(half a character): that tail waits for the next token. Chat text is `clean_hypothesis`ed
(one line, stripped): trailing whitespace waits too, since the final text drops it when the
reply ends there. A tail that could be the start of a stop string waits until it is clear
either way; once a stop string is there, the text ends before it and the row is done. So the
deltas always join to exactly the final text, which never holds a stop string.
"""
from __future__ import annotations

from lsp_model.chat import clean_hypothesis
from lsp_model.tokenizer import decode


def _held_back(text: str, stops: list[str]) -> int:
    """The length of the longest tail of `text` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class TextStream:
    def __init__(self, tok, stops: list[str], clean: bool):
        self.tok, self.stops, self.clean = tok, stops, clean
        self.ids: list[int] = []
        self.sent = 0              # characters of the text already handed out
        self.stopped = False       # a stop string appeared: the text is final
        self.text = ""

    def _render(self) -> str:
        text = decode(self.tok, self.ids)
        return clean_hypothesis(text) if self.clean else text

    def _emit(self, end: int) -> str:
        if end <= self.sent:
            return ""
        out = self.text[self.sent:end]
        self.sent = end
        return out

    def push(self, token: int) -> str:
        """Add one reply token (not EOS); the text that is safe to send now."""
        self.ids.append(token)
        full = decode(self.tok, self.ids)
        text = clean_hypothesis(full) if self.clean else full
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.text = text[:min(cuts)]
            self.text = self.text.rstrip() if self.clean else self.text
            self.stopped = True
            return self._emit(len(self.text))
        self.text = text
        # the raw tail decides what may still change: whitespace and a half character
        safe = full.rstrip("\ufffd")
        safe = clean_hypothesis(safe) if self.clean else safe
        end = len(safe) - _held_back(safe, self.stops)
        return self._emit(min(end, len(text)))

    def finish(self) -> str:
        """The row ended (EOS, length or a stop string): the rest of the final text."""
        if not self.stopped:
            self.text = self._render()
        return self._emit(len(self.text))
