"""``clean_str``: the DSTC-7 / DialoGPT text normalisation, step for step.

Applied to hypotheses and references when the evaluation runs with ``--clean`` (every
profile except ``dialogpt_noclean``).  Reproduces ``dstc/tokenizers.py`` of DialoGPT (identical
in DSTC-7 ``evaluation/src``); output is byte-identical with nltk 3.4.1 and current nltk.
"""
from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["clean_str", "CONTRACTIONS"]

CONTRACTIONS = ("'s", "'m", "'re", "n't", "'ll", "'ve", "'d", "'em")

_MD_LINK = re.compile(r"\[([^\]]*)\] \( *__url__ *\)")
_ILLEGAL = re.compile(r"[^A-Za-z0-9():,.!?\"\']")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _tweet_tokenizer():
    # Imported lazily: nltk's import costs ~0.5 s and is only needed with cleaning on.
    from nltk.tokenize import TweetTokenizer

    # The original used preserve_case=False.  By step 5 the text is lower-case ASCII (step 1
    # lower-cases, step 4 drops every non-ASCII char), so its per-token lower-casing is a no-op;
    # preserve_case=True gives the same tokens without a regex search per token.
    return TweetTokenizer(preserve_case=True)


def clean_str(txt: str) -> str:
    """Normalise one response or reference the way the original ``--clean`` did.

    1. Unicode lower-case; 2. from ``http`` to the end of a whitespace token -> `` __url__``;
    3. markdown ``[ text ] ( __url__ )`` -> ``text``; 4. every char outside
    ``[A-Za-z0-9():,.!?"']`` -> space (``__url__`` protected); 5. nltk TweetTokenizer;
    6. ``won't``/``can't`` and the suffixes in :data:`CONTRACTIONS` split off at token end;
    7. collapse whitespace.
    """
    words = []
    for word in txt.lower().split():
        i = word.find("http")
        if i >= 0:
            word = word[:i] + " __url__"
        words.append(word.strip())
    txt = " ".join(words)
    txt = _MD_LINK.sub(r"\1", txt)
    # 'URL' cannot occur otherwise: the text is lower-cased already.
    txt = txt.replace("__url__", "URL")
    txt = _ILLEGAL.sub(" ", txt)
    txt = txt.replace("URL", "__url__")
    txt = " " + " ".join(_tweet_tokenizer().tokenize(txt)) + " "
    txt = txt.replace(" won't ", " will n't ").replace(" can't ", " can n't ")
    for a in CONTRACTIONS:
        txt = txt.replace(a + " ", " " + a + " ")
    return _SPACES.sub(" ", txt).strip()
