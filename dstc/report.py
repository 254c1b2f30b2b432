"""The paper's table (text or markdown) and the signature line printed with it."""
from __future__ import annotations

from importlib import metadata
from typing import Any, Callable

__all__ = ["HEADLINE", "COLUMNS", "format_table", "signature"]

#: the paper's nine columns, taken from a result dict
HEADLINE: dict[str, Callable[[dict], Any]] = {
    "NIST-2": lambda s: s["nist"][1],
    "NIST-4": lambda s: s["nist"][3],
    "BLEU-2": lambda s: s["bleu"][1],
    "BLEU-4": lambda s: s["bleu"][3],
    "METEOR": lambda s: s["meteor"],
    "Entropy-4": lambda s: s["entropy"][3],
    "Distinct-1": lambda s: s["distinct"][0],
    "Distinct-2": lambda s: s["distinct"][1],
    "AvgLen": lambda s: s["avg_len"],
}

# column -> (header, formatter); percentages as in the DialoGPT README table
_PCT = "{:.2%}".format
COLUMNS: dict[str, tuple[str, Callable[[float], str]]] = {
    "NIST-2": ("NIST-2", "{:.4f}".format),
    "NIST-4": ("NIST-4", "{:.4f}".format),
    "BLEU-2": ("BLEU-2", _PCT),
    "BLEU-4": ("BLEU-4", _PCT),
    "METEOR": ("METEOR", _PCT),
    "Entropy-4": ("Ent-4", "{:.2f}".format),
    "Distinct-1": ("Dist-1", _PCT),
    "Distinct-2": ("Dist-2", _PCT),
    "AvgLen": ("Len", "{:.1f}".format),
}


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "?"


def signature(profile, meteor=None, mteval=None) -> str:
    """``dstc|profile:..|clean:..|n_refs:..|vshuman:..|mteval:..|meteor:..|nltk:..`` line, the
    metrics' parts from their own ``signature()``.

    Args:
        profile: the :class:`~dstc.profiles.Profile` used.
        meteor: the :class:`~dstc.metrics.meteor.Meteor` that produced the value, or None
            when METEOR did not run.
        mteval: the :class:`~dstc.metrics.nist_bleu.NistBleu` used (default: the standard one).
    """
    if mteval is None:
        from .metrics.nist_bleu import NistBleu
        mteval = NistBleu()
    met = meteor.signature() if meteor is not None else "meteor:n/a"
    empty = f"|empty:{profile.empty_token}" if profile.empty_token else ""
    return (f"dstc|profile:{profile.name}|clean:{'yes' if profile.clean else 'no'}"
            f"|n_refs:{profile.n_refs}|vshuman:{profile.vshuman}{empty}"
            f"|{mteval.signature()}|{met}"
            f"|nltk:{_version('nltk')}|dialogpt:{_version('dialogpt')}")


def format_table(scores: dict | dict[str, dict], fmt: str = "text", name: str = "system") -> str:
    """The paper's table for one result dict or ``{system: result}``, plus the signature line.

    Args:
        scores: a result of :func:`dstc.evaluate` or a dict of them keyed by system name.
        fmt: ``text`` (aligned columns) or ``markdown``.
        name: row label when a single result is given.
    """
    rows = {name: scores} if "nist" in scores else dict(scores)
    ranker = any("ranker" in s for s in rows.values())  # python -m dstc --ranker: one more column
    header = ["system"] + [h for h, _ in COLUMNS.values()] + (["Ranker"] if ranker else [])
    body = []
    for sys_name, s in rows.items():
        cells = [sys_name]
        for key, (_, fmt_cell) in COLUMNS.items():
            v = HEADLINE[key](s)
            cells.append("n/a" if v is None else fmt_cell(v))
        if ranker:
            cells.append("n/a" if s.get("ranker") is None else f"{s['ranker']:.4f}")
        body.append(cells)
    notes = []
    for s in rows.values():
        for line in (s.get("signature"),) + ((s.get("meteor_status"),) if s.get("meteor") is None else ()):
            if line and line != "skipped" and line not in notes:
                notes.append(line)
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c) + " |" for c in body]
        return "\n".join(lines + [""] + [f"`{n}`" if n.startswith("dstc|") else n for n in notes])
    if fmt != "text":
        raise ValueError(f"fmt must be 'text' or 'markdown', not {fmt!r}")
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + body]
    return "\n".join(lines + notes)
