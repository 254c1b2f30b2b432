"""One contract for every DSTC metric (after sacrebleu's ``Metric``).

A metric sees the *prepared* corpus (:class:`dstc.corpus.Corpus`: cleaned hypotheses and the
``n_refs`` reference slots) and returns its values; ``signature()`` names every setting that
changes the number, and is printed with each table. ``available()`` says whether it can run
here; ``begin()`` starts it, so a metric that runs an external program (METEOR's jar) works
while the others score.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable


class MetricUnavailable(RuntimeError):
    """A metric that cannot run here (a missing program); the message says why and how to fix it."""


class Metric(ABC):
    """Base class: ``corpus_score(corpus) -> dict`` plus a ``signature()``."""

    #: short name used in signatures and error messages
    name: str = "metric"

    @abstractmethod
    def corpus_score(self, corpus) -> dict[str, Any]:
        """Score a whole :class:`~dstc.corpus.Corpus`; returns result keys -> values."""

    def available(self) -> str | None:
        """None when the metric can run here, else one line saying what is missing."""
        return None

    def begin(self, corpus) -> Callable[[], dict[str, Any]]:
        """Start scoring `corpus`; calling the result gives :meth:`corpus_score`'s dict (it may
        raise :class:`MetricUnavailable`). The default scores at once."""
        scores = self.corpus_score(corpus)
        return lambda: scores

    def signature(self) -> str:
        """``name:setting|...`` string; settings that change the value must appear here."""
        return self.name
