"""Text normalisation, exactly as the original reddit.py.

Two steps: ``minimal_norm`` runs at extract time on titles and bodies, and
``gpt_norm`` turns an extracted body into the space-tokenised text found in
train.tsv (``I think so , but ...``).
"""
import re

_ILLEGAL = re.compile(r"[^A-Za-z0-9()\[\]:,.!?'“” ]")
# Tokens can only span a space through a spaced ellipsis (". .") or a phone
# number, and TweetTokenizer's phone pattern needs at least 7 digits.
_ELLIPSIS = re.compile(r'\.\s+\.')
_DIGITS = '0123456789'
_PHONE_DIGITS = 7
_WORD_TOKENS = {}  # word -> its tokens joined by spaces
# Letters with inner apostrophes ("don't") are one token, and trailing
# ".,!?" are tokenised as if alone: no TweetTokenizer pattern (URL, emoticon,
# e-mail, ...) can match such a word differently without ":;=8<>@#-/" or a
# letter after a dot.  Other words go to nltk (~30 us each).
_PLAIN_WORD = re.compile(r"([A-Za-z]+(?:'[A-Za-z]+)*)([.,!?]*)")
_WORD_CACHE_MAX = 2000000
_TOKENIZER_ = []


def load_tokenizer():
    # Imported on first use: nltk (with the scipy it pulls in) takes ~1 s to
    # import, and only the conv step tokenises.
    if not _TOKENIZER_:
        from nltk.tokenize import TweetTokenizer
        _TOKENIZER_.append(TweetTokenizer(preserve_case=True))
    return _TOKENIZER_[0]


def _spans(txt):
    """True when a token of ``txt`` might contain a space (see tokenize)."""
    if _ELLIPSIS.search(txt) is not None:
        return True
    return sum(map(txt.count, _DIGITS)) >= _PHONE_DIGITS


def _word(word):
    m = _PLAIN_WORD.fullmatch(word)
    if m is None:
        toks = ' '.join(load_tokenizer().tokenize(word))
    elif m.end(1) == len(word):
        toks = word
    else:
        toks = m.group(1) + ' ' + (_WORD_TOKENS.get(m.group(2)) or _word(m.group(2)))
    if len(_WORD_TOKENS) < _WORD_CACHE_MAX:
        _WORD_TOKENS[word] = toks
    return toks


def tokenized(txt):
    """``' '.join(TweetTokenizer(preserve_case=True).tokenize(txt))`` for gpt_norm's alphabet, faster.

    After gpt_norm's character filter the text holds only ``[A-Za-z0-9()[]:,.!?'“” ]``
    (and ``_`` in ``__url__``/``__mention__``).  On that alphabet a token can
    only cross a space in a spaced ellipsis (``. .``) or a phone number (which
    needs 7+ digits), so otherwise the tokens of the text are the tokens of
    its words, and each distinct word is tokenised once (the lookups run in C
    through ``map``).  Other texts go through the tokenizer whole.  (Tested
    against nltk on the golden bodies and on generated text.)
    """
    if _spans(txt):
        return ' '.join(load_tokenizer().tokenize(txt))
    words = txt.split()
    parts = list(map(_WORD_TOKENS.get, words))
    if None in parts:
        parts = [_word(w) if p is None else p for w, p in zip(words, parts)]
    return ' '.join(parts)


def tokenize(txt):
    """``TweetTokenizer(preserve_case=True).tokenize(txt)`` for gpt_norm's alphabet, as a list."""
    if _spans(txt):  # a token may hold spaces (". . .")
        return load_tokenizer().tokenize(txt)
    return tokenized(txt).split()


def minimal_norm(txt):
    """Drop backslashes (``b\\/c`` in dumps), turn newlines/tabs into spaces."""
    return txt.replace('\\', '').replace('\n', ' ').replace('\r', ' ').replace('\t', ' ')


def gpt_norm(txt):
    """The original ``gpt_norm_sentence``.

    Kept quirks: a literal ``URL``/``MENTION`` anywhere in the text (even inside
    a word such as ``CURLY``) becomes ``__url__``/``__mention__``, because the
    placeholders are protected by a round trip through those words.
    """
    if '#' in txt or 'http' in txt.lower():
        words = []
        for word in txt.split():
            if word[0] == '#':  # hashtags are dropped
                continue
            i = word.lower().find('http')
            if i >= 0:
                word = word[:i] + ' ' + '__url__'
            words.append(word.strip())
        txt = ' '.join(words)
    else:  # the loop above would keep every word as it is
        txt = ' '.join(txt.split())
    txt = txt.replace('\\', '')
    if '/' in txt:
        txt = txt.replace('b/c', 'because').replace('j/k', 'just kidding')
        txt = txt.replace('w/o', 'without').replace('w/', 'with')
    txt = txt.replace('__mention__', 'MENTION').replace('__url__', 'URL')
    txt = _ILLEGAL.sub(' ', txt)
    txt = txt.replace('MENTION', '__mention__').replace('URL', '__url__')
    return ' '.join(tokenized(txt).split())


class Blocklist:
    """Whole-word, case-insensitive phrase matcher (flashtext ``KeywordProcessor``).

    flashtext only starts a match at the start of the text or after a
    non-word character, and only accepts it if it ends at the end of the text
    or before a non-word character; word characters are ASCII letters, digits
    and ``_``.  A regex with the same look-arounds gives the same yes/no answer.
    """

    def __init__(self, phrases):
        # flashtext reports a phrase as it was listed; a later duplicate (any case) wins
        self.names = {p.lower(): p for p in phrases if p}
        phrases = sorted(self.names, key=len, reverse=True)
        self.phrases = phrases
        if phrases:
            body = '|'.join(re.escape(p) for p in phrases)
            self._re = re.compile(r'(?<![A-Za-z0-9_])(?:%s)(?![A-Za-z0-9_])' % body)
        else:
            self._re = None

    def __bool__(self):
        return self._re is not None

    def search(self, text):
        """True when any phrase occurs as whole words in ``text``."""
        return self._re is not None and self._re.search(text.lower()) is not None

    def found(self, text):
        """The phrases found in ``text``, in order, as listed (flashtext ``extract_keywords``)."""
        if self._re is None:
            return []
        return [self.names[m.group(0)] for m in self._re.finditer(text.lower())]


def read_list(path):
    """Lines of a blocklist file, stripped; empty lines are skipped."""
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]
