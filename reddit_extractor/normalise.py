"""Text normalisation, exactly as the original reddit.py.

Two steps: ``minimal_norm`` runs at extract time on titles and bodies, and
``gpt_norm`` turns an extracted body into the space-tokenised text found in
train.tsv (``I think so , but ...``).
"""
import re
import string

from nltk.tokenize import TweetTokenizer

_ILLEGAL = re.compile(r"[^A-Za-z0-9()\[\]:,.!?'“” ]")
_TOKENIZER = TweetTokenizer(preserve_case=True)
# Only phone numbers (digits) and spaced ellipses (". .") give tokens that span a space.
_SPANNING = re.compile(r'[0-9]|\.\s+\.')
_WORD_TOKENS = {}
_WORD_CACHE_MAX = 2000000


def tokenize(txt):
    """``TweetTokenizer(preserve_case=True).tokenize(txt)`` for gpt_norm's alphabet, faster.

    After gpt_norm's character filter the text holds only ``[A-Za-z0-9()[]:,.!?'“” ]``
    (and ``_`` in ``__url__``/``__mention__``).  On that alphabet no token crosses
    a space unless it involves a digit or a spaced ellipsis, so the tokens of the
    text are the tokens of its words, and each distinct word is tokenised once.
    Texts with a digit or ``. .`` go through the tokenizer whole.  (Tested
    against nltk on the golden bodies and on generated text.)
    """
    if _SPANNING.search(txt):
        return _TOKENIZER.tokenize(txt)
    out = []
    for word in txt.split():
        toks = _WORD_TOKENS.get(word)
        if toks is None:
            toks = _TOKENIZER.tokenize(word)
            if len(_WORD_TOKENS) < _WORD_CACHE_MAX:
                _WORD_TOKENS[word] = toks
        out.extend(toks)
    return out


def minimal_norm(txt):
    """Drop backslashes (``b\\/c`` in dumps), turn newlines/tabs into spaces."""
    return txt.replace('\\', '').replace('\n', ' ').replace('\r', ' ').replace('\t', ' ')


def gpt_norm(txt):
    """The original ``gpt_norm_sentence``.

    Kept quirks: a literal ``URL``/``MENTION`` anywhere in the text (even inside
    a word such as ``CURLY``) becomes ``__url__``/``__mention__``, because the
    placeholders are protected by a round trip through those words.
    """
    words = []
    for word in txt.split():
        if word[0] == '#':  # hashtags are dropped
            continue
        i = word.lower().find('http')
        if i >= 0:
            word = word[:i] + ' ' + '__url__'
        words.append(word.strip())
    txt = ' '.join(words)
    txt = txt.replace('\\', '')
    txt = txt.replace('b/c', 'because').replace('j/k', 'just kidding')
    txt = txt.replace('w/o', 'without').replace('w/', 'with')
    txt = txt.replace('__mention__', 'MENTION').replace('__url__', 'URL')
    txt = _ILLEGAL.sub(' ', txt)
    txt = txt.replace('MENTION', '__mention__').replace('URL', '__url__')
    return ' '.join(' '.join(tokenize(txt)).split())


_WORD_CHARS = set(string.ascii_letters + string.digits + '_')


class Blocklist:
    """Whole-word, case-insensitive phrase matcher (flashtext ``KeywordProcessor``).

    flashtext only starts a match at the start of the text or after a
    non-word character, and only accepts it if it ends at the end of the text
    or before a non-word character; word characters are ASCII letters, digits
    and ``_``.  A regex with the same look-arounds gives the same yes/no answer.
    """

    def __init__(self, phrases):
        phrases = sorted({p.lower() for p in phrases if p}, key=len, reverse=True)
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


def read_list(path):
    """Lines of a blocklist file, stripped; empty lines are skipped."""
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]
