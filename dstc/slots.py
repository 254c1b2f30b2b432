"""Reference slots: which reference fills ``ref0..ref{n_refs-1}`` for one example.

The original ``extract_hyp_refs`` fills slot ``i`` with reference ``i % L`` (L = number of
references) and, when that is the held-out human reference ``vshuman``, with the next one.
With the default ``vshuman=1`` reference #2 is never used, for every system.
"""
from __future__ import annotations

__all__ = ["slot_indices", "fill_slots", "strip_score"]


def slot_indices(n_available: int, n_refs: int = 6, vshuman: int = 1) -> list[int]:
    """Reference index used by each slot, e.g. ``slot_indices(3) == [0, 2, 2, 0, 2, 2]``.

    ``n_available == 0`` gives ``[]`` (the original died on ``i % 0``; see :func:`fill_slots`).
    """
    if n_available <= 0:
        return []
    out = []
    for i in range(n_refs):
        idx = i % n_available
        if idx == vshuman:
            idx = (idx + 1) % n_available
        out.append(idx)
    return out


def fill_slots(refs: list[str], n_refs: int = 6, vshuman: int = 1) -> list[str]:
    """The ``n_refs`` slot texts of one example.

    Rule for an example without any reference (the original crashed): every slot is empty,
    i.e. scored like an example whose references are all empty after cleaning.
    """
    idx = slot_indices(len(refs), n_refs, vshuman)
    return [refs[i] for i in idx] if idx else [""] * n_refs


def strip_score(field: str) -> str:
    """Text of a DSTC ``test.refs`` field ``score|text``.

    Rule: split on the FIRST ``|`` only, so a reference containing ``|`` stays whole (the
    original's ``split('|')[1]`` truncated it at its own first ``|``).  A field without ``|``
    is returned unchanged, as DialoGPT did.
    """
    return field.split("|", 1)[1] if "|" in field else field
