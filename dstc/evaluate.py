"""``evaluate()``: the whole DSTC-7 / DialoGPT evaluation of one system, as a dict."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .corpus import Corpus
from .files import write_lines
from .metrics.diversity import AvgLen, Distinct, Entropy
from .metrics.base import MetricUnavailable
from .metrics.meteor import Meteor
from .metrics.nist_bleu import NistBleu
from .mteval_xml import write_mteval_xml
from .profiles import Profile, get_profile
from .report import HEADLINE, signature

__all__ = ["evaluate", "evaluate_corpus", "write_artifacts"]


def evaluate(hyps: list[str], refs: list[list[str]], profile: str | Profile = "dialogpt",
             meteor: bool = True, *, clean: bool | None = None, n_refs: int | None = None,
             vshuman: int | None = None, n_lines: int | None = None, max_order: int = 4,
             artifacts_dir: str | Path | None = None, meteor_jar: str | Path | None = None,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score one system the way DialoGPT's ``dstc/dstc.py`` did (without its crashes).

    Args:
        hyps: one hypothesis per example (raw text; may be empty).
        refs: the raw references of each example (any number; ``n_refs`` slots pick from them,
            skipping the held-out human reference ``vshuman``).
        profile: ``dialogpt`` (the paper), ``dstc7`` (organisers' code), ``dialogpt_vshuman_off``,
            ``dialogpt_noclean``, or a :class:`~dstc.profiles.Profile`.
        meteor: run METEOR 1.5 (Java); when it cannot run, ``meteor`` is None and
            ``meteor_status`` says why and how to get it.
        clean, n_refs, vshuman: override the profile's setting.
        n_lines: score only the first ``n_lines`` examples (``None``/-1: all).
        max_order: highest n-gram order of NIST/BLEU computed (4 for the tables; 9 = mteval's).
        artifacts_dir: also write the original's intermediate files there (``hyp.txt``,
            ``ref0..5.txt``, ``refs_merged.txt``, ``src/hyp/ref.xml``).
        meteor_jar: explicit ``meteor-1.5.jar`` (default: the pycocoevalcap one).
        progress: called with a line now and then while METEOR runs (``python -m dstc``
            prints them on stderr); None: silent.

    Returns:
        dict with ``n_lines``, ``nist`` [NIST-1..4], ``bleu`` [BLEU-1..4] (both rounded to 4
        decimals as mteval prints them), ``meteor``, ``entropy`` [1..4], ``distinct`` [1, 2],
        ``avg_len``, ``headline`` (the paper's nine columns), ``hiprec`` (unrounded NIST/BLEU,
        cumulative and individual, n = 1..max_order), ``meteor_status``, ``profile`` and
        ``signature``.
    """
    prof = get_profile(profile).with_overrides(clean=clean, n_refs=n_refs, vshuman=vshuman)
    corpus = Corpus.build(hyps, refs, prof, n_lines=n_lines)
    if artifacts_dir is not None:
        write_artifacts(corpus, artifacts_dir)
    return evaluate_corpus(corpus, meteor=meteor, max_order=max_order, meteor_jar=meteor_jar, progress=progress)


def evaluate_corpus(corpus: Corpus, meteor: bool = True, max_order: int = 4,
                    meteor_jar: str | Path | None = None,
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """:func:`evaluate` on an already prepared :class:`~dstc.corpus.Corpus`.

    Every metric goes through the same contract (:class:`~dstc.metrics.base.Metric`): the ones
    that can run are begun in order (METEOR first, so its jar works while Python scores the
    rest), then their values are collected; one that cannot run gives None and a status line.
    """
    mteval = NistBleu(max_order)
    metrics = [mteval, Entropy(), Distinct(), AvgLen()]
    if meteor:
        metrics.insert(0, Meteor(jar=meteor_jar, progress=progress))
    status, begun = {}, []
    for metric in metrics:
        status[metric.name] = metric.available()
        if status[metric.name] is None:
            begun.append((metric, metric.begin(corpus)))
    scores: dict[str, Any] = {"n_lines": len(corpus), "meteor": None}
    ran = {}
    for metric, collect in begun:
        try:
            scores.update(collect())
            status[metric.name], ran[metric.name] = "ok", metric
        except MetricUnavailable as e:
            status[metric.name] = str(e)
    hiprec = scores.pop("hiprec")
    order = ["n_lines", "nist", "bleu", "meteor", "entropy", "distinct", "avg_len"]
    out = {k: scores[k] for k in order}
    out["headline"] = {name: get(out) for name, get in HEADLINE.items()}
    out["hiprec"] = hiprec
    out["meteor_status"] = status.get("meteor", "skipped")
    out["profile"] = corpus.profile.name
    out["signature"] = signature(corpus.profile, meteor=ran.get("meteor"), mteval=mteval)
    return out


def write_artifacts(corpus: Corpus, folder: str | Path, source_prefix: str | None = None) -> Path:
    """Write what the original wrote to ``<system>_cleaned/`` (same bytes when it worked)."""
    from .metrics.meteor import write_merged_refs

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_lines(folder / "hyp.txt", corpus.hyps)
    for j, col in enumerate(corpus.slot_files()):
        write_lines(folder / f"ref{j}.txt", col)
    write_merged_refs(folder / "refs_merged.txt", corpus.refs)
    write_mteval_xml(folder, corpus, source_prefix)
    return folder
