"""Evaluation profiles: the settings of the original runs the numbers must be compared with."""
from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """Every setting that changes a DSTC number.

    Attributes:
        name: profile name (printed in the signature).
        clean: apply :func:`dstc.clean_str.clean_str` to hypotheses and references.
        n_refs: number of reference slots (files ``ref0..ref{n_refs-1}``).
        vshuman: index of the held-out human reference, skipped when filling slots
            (``-1``: none held out).
        empty_token: text written into the mteval XML for an empty line (DSTC-7: ``__empty__``,
            which mteval reads as 5 words ``_ _ empty _ _``); ``None`` keeps it empty.
        description: one line for ``--help`` and the docs.
    """

    name: str
    clean: bool = True
    n_refs: int = 6
    vshuman: int = 1
    empty_token: str | None = None
    description: str = ""

    def with_overrides(self, clean: bool | None = None, n_refs: int | None = None,
                       vshuman: int | None = None) -> "Profile":
        """The same profile with some settings changed (``None`` keeps a setting)."""
        kw = {k: v for k, v in dict(clean=clean, n_refs=n_refs, vshuman=vshuman).items() if v is not None}
        return replace(self, **kw) if kw else self


PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile("dialogpt", description="DialoGPT dstc/dstc.py --clean (the paper's table): 6 slots, human ref #2 held out"),
    Profile("dstc7", empty_token="__empty__",
            description="DSTC-7 organisers' evaluation/src/dstc.py -c: as dialogpt, empty lines are __empty__ for mteval"),
    Profile("dialogpt_vshuman_off", vshuman=-1, description="dialogpt with -v -1: no reference held out"),
    Profile("dialogpt_noclean", clean=False, description="dialogpt without --clean: raw text to every metric"),
]}


def get_profile(profile: str | Profile) -> Profile:
    """Look a profile up by name (a :class:`Profile` is returned unchanged)."""
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}") from None
