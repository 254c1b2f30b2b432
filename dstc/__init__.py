"""DSTC-7 / DialoGPT automatic evaluation, number for number equal to mteval-v14c and METEOR 1.5.

>>> from dstc import evaluate, format_table
>>> scores = evaluate(hyps, refs, profile="dialogpt", meteor=True)   # doctest: +SKIP
>>> print(format_table(scores))                                      # doctest: +SKIP

NIST/BLEU are a pure-Python port of ``mteval-v14c.pl``; METEOR runs the real 1.5 jar; entropy,
distinct and length are the original Python.  See docs/evaluation.md.
"""
from .clean_str import clean_str
from .corpus import Corpus
from .evaluate import evaluate, evaluate_corpus, write_artifacts
from .profiles import PROFILES, Profile, get_profile
from .report import format_table, signature

__all__ = ["evaluate", "evaluate_corpus", "format_table", "signature", "clean_str", "Corpus",
           "Profile", "PROFILES", "get_profile", "write_artifacts"]
