"""The prepared corpus every metric reads: cleaned hypotheses and reference slots.

This is what the original wrote to ``<system>_cleaned/`` (``hyp.txt``, ``ref0..5.txt``) and
every scorer re-read; here it stays in memory and each metric takes its own view
(:meth:`Corpus.mteval_hyps`, :meth:`Corpus.whitespace_hyps`, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import mteval_tokenizer
from .clean_str import clean_str
from .files import check_same_length
from .profiles import Profile, get_profile
from .slots import fill_slots

__all__ = ["Corpus"]


@dataclass
class Corpus:
    """Hypotheses and slot references after cleaning, one entry per example.

    Attributes:
        hyps: hypothesis per example (the content of ``hyp.txt``).
        refs: ``refs[i][j]`` = slot ``j`` of example ``i`` (the content of ``ref{j}.txt``).
        profile: the settings that produced them.
    """

    hyps: list[str]
    refs: list[list[str]]
    profile: Profile
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, hyps: list[str], refs: list[list[str]], profile: str | Profile = "dialogpt",
              n_lines: int | None = None) -> "Corpus":
        """Clean and expand raw inputs.

        Args:
            hyps: one raw hypothesis per example.
            refs: raw references per example (any number; the slots pick from them).
            profile: a :class:`Profile` or its name.
            n_lines: score only the first ``n_lines`` examples (``None``/``-1``: all).
        """
        profile = get_profile(profile)
        check_same_length(len(hyps), len(refs))
        if n_lines is not None and n_lines >= 0:
            hyps, refs = hyps[:n_lines], refs[:n_lines]
        if not hyps:
            raise ValueError("nothing to evaluate: no hypotheses")
        cache: dict[str, str] = {}

        def prep(s: str) -> str:
            if not profile.clean:
                return s
            out = cache.get(s)
            if out is None:
                out = cache[s] = clean_str(s)
            return out

        slots = [[prep(r) for r in fill_slots(rs, profile.n_refs, profile.vshuman)] for rs in refs]
        return cls([prep(h) for h in hyps], slots, profile)

    def __len__(self) -> int:
        return len(self.hyps)

    def slot_files(self) -> list[list[str]]:
        """Slot-major view: ``slot_files()[j]`` is the content of ``ref{j}.txt``."""
        return [list(col) for col in zip(*self.refs)]

    # -- views for the metrics -------------------------------------------------------------
    def xml_text(self, line: str) -> str:
        """A line as the original put it into the mteval XML (``&``/``<`` -> space, empty rule)."""
        line = line.replace("&", " ").replace("<", " ")
        if not line and self.profile.empty_token:
            return self.profile.empty_token
        return line

    def _mteval_words(self, line: str) -> list[str]:
        memo = self._cache.setdefault("mteval", {})
        words = memo.get(line)
        if words is None:
            words = memo[line] = mteval_tokenizer.tokenize(self.xml_text(line))
        return words

    def mteval_hyps(self) -> list[list[str]]:
        """mteval words of every hypothesis."""
        return [self._mteval_words(h) for h in self.hyps]

    def mteval_refs(self) -> list[list[list[str]]]:
        """mteval words of every slot of every example."""
        return [[self._mteval_words(r) for r in slots] for slots in self.refs]

    def whitespace_hyps(self) -> list[list[str]]:
        """``line.split()`` of every hypothesis: the tokens of entropy, distinct and length."""
        return [h.split() for h in self.hyps]
