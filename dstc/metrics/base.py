"""One contract for every DSTC metric (after sacrebleu's ``Metric``).

A metric sees the *prepared* corpus (:class:`dstc.corpus.Corpus`: cleaned hypotheses and the
``n_refs`` reference slots) and returns its values; ``signature()`` names every setting that
changes the number, and is printed with each table.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Metric(ABC):
    """Base class: ``corpus_score(corpus) -> dict`` plus a ``signature()``."""

    #: short name used in signatures and error messages
    name: str = "metric"

    @abstractmethod
    def corpus_score(self, corpus) -> dict[str, Any]:
        """Score a whole :class:`~dstc.corpus.Corpus`; returns result keys -> values."""

    def signature(self) -> str:
        """``name:setting|...`` string; settings that change the value must appear here."""
        return self.name
