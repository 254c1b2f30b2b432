"""mteval-v14c default tokenisation (``tokenization`` + v11b/v13a ``tokenization_orig``).

What ``mteval-v14c.pl`` (run without ``-c`` and without ``--international-tokenization``) does to
the text of every ``<seg>``, in Python.  Perl details that change tokens are kept:

* ``\\s`` is Perl's Unicode whitespace (XML::Twig hands mteval character strings), which is
  not Python's: Python's ``\\s`` also matches U+001C..U+001F.
* lower-casing is ASCII only (``tr/[A-Z]/[a-z]/``).
* tokens starting with ``http://`` / ``https://`` are kept verbatim (v14a), not even lower-cased.
"""
from __future__ import annotations

import re

__all__ = ["tokenize", "tokenize_per_token", "split_words", "PERL_WS"]

# Perl's \s on character strings (5.18+): the Unicode White_Space set.
PERL_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_WS_RUN = re.compile(f"[{PERL_WS}]+")
_URL = re.compile(r"https?://")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# s/([\{-\~\[-\` -\&\(-\+\:-\@\/])/ $1 /g : { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
# One char in, the same char padded out: a translate table does it without a regex.
_PUNCT_CHARS = "{|}~[\\]^_` !\"#$%&()*+:;<=>?@/"
_PUNCT = str.maketrans({c: f" {c} " for c in _PUNCT_CHARS})
_PERIOD_COMMA_AFTER = re.compile(r"([^0-9])([\.,])")
_PERIOD_COMMA_BEFORE = re.compile(r"([\.,])([^0-9])")
_DIGIT_DASH = re.compile(r"([0-9])(-)")


def split_words(text: str) -> list[str]:
    """Perl ``split /\\s+/, trim($text)``: words separated by Perl whitespace."""
    return [w for w in _WS_RUN.split(text) if w]


def _tokenize_token(tok: str) -> str:
    """v11b/v13a ``tokenization_orig`` applied to one whitespace-free token."""
    tok = tok.replace("<skipped>", "")
    tok = tok.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    tok = " " + tok.translate(_ASCII_LOWER) + " "
    tok = tok.translate(_PUNCT)
    if "." in tok or "," in tok:
        tok = _PERIOD_COMMA_AFTER.sub(r"\1 \2 ", tok)
        tok = _PERIOD_COMMA_BEFORE.sub(r" \1 \2", tok)
    if "-" in tok:
        tok = _DIGIT_DASH.sub(r"\1 \2 ", tok)
    return " ".join(split_words(tok))


def tokenize(text: str) -> list[str]:
    """mteval-v14c words of one segment text (what NIST/BLEU count n-grams over)."""
    if "http" not in text:
        # Fast path: with single spaces between tokens no rule can match across a token
        # boundary differently, so the whole segment at once equals token by token
        # (checked against the per-token form in tests/test_dstc_edge.py).
        return split_words(_tokenize_token(" ".join(split_words(text))))
    return tokenize_per_token(text)


def tokenize_per_token(text: str) -> list[str]:
    """The literal v14c loop: URL tokens verbatim, every other token tokenised alone."""
    out: list[str] = []
    for tok in split_words(text):
        if _URL.match(tok):
            out.append(tok)
        else:
            out.extend(split_words(_tokenize_token(tok)))
    return out
