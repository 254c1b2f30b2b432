"""Command lines: ``python -m dstc`` and the original's ``dstc.py`` / ``batch_eval.py`` /
``extract_human.py`` (thin wrappers around :func:`dstc.evaluate`)."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from lsp_model.generation_args import add_ranker_args

from .evaluate import evaluate
from .files import check_same_length, read_lines, read_refs_tsv
from .profiles import PROFILES
from .report import format_table
from .slots import strip_score
from lsp_io.cli import command, prog_name

__all__ = ["main", "read_test_refs", "read_submission", "print_original_report"]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="dialogpt", choices=sorted(PROFILES),
                   help="settings of the run to reproduce (default: dialogpt, the paper's)")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (no Java needed)")
    p.add_argument("--json", metavar="OUT", help="write the result(s) as JSON (full precision)")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    p.add_argument("--artifacts", metavar="DIR",
                   help="write the original's intermediate files (hyp.txt, ref*.txt, *.xml) there")


def _emit(results: dict[str, dict], args) -> None:
    if args.json:
        out = next(iter(results.values())) if len(results) == 1 else results
        Path(args.json).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(format_table(results, fmt="markdown" if args.markdown else "text"))


def _progress(label: str):
    """Progress lines for slow metrics (METEOR), on stderr so stdout stays the table."""
    def say(msg: str) -> None:
        print(f"python -m dstc: {label}: {msg}", file=sys.stderr, flush=True)
    return say


@command("python -m dstc")
def main(argv: list[str] | None = None) -> int:
    """``python -m dstc --refs refs.tsv --hyp hyp.txt [--profile dialogpt|dstc7] [--json OUT]``."""
    p = argparse.ArgumentParser(prog=prog_name("python -m dstc"), description=(
        "DSTC-7 / DialoGPT evaluation (NIST, BLEU, METEOR, entropy, distinct, length) of "
        "line-aligned hypothesis files against refs.tsv (context \\t ref1 \\t ref2 ...)."))
    p.add_argument("--refs", required=True, help="refs.tsv: context \\t ref1 \\t ref2 ... per line")
    p.add_argument("--hyp", required=True, nargs="+", help="hypothesis file(s), one line per example")
    p.add_argument("--n_refs", type=int, help="reference slots (profile default 6)")
    p.add_argument("--vshuman", type=int, help="held-out human reference index (-1: none)")
    p.add_argument("--no-clean", dest="clean", action="store_false", default=None,
                   help="score raw text (no clean_str)")
    p.add_argument("--n_lines", type=int, default=-1, help="score the first N examples only")
    _add_common(p)
    add_ranker_args(p, rerank=False)
    args = p.parse_args(argv)
    results = {}
    try:
        contexts, refs = read_refs_tsv(args.refs)
        ranker = _load_ranker(args) if args.ranker else None
        for path in args.hyp:
            hyps = read_lines(path)
            check_same_length(len(hyps), len(refs), path, args.refs)
            art = None
            if args.artifacts:
                art = Path(args.artifacts) / Path(path).stem if len(args.hyp) > 1 else args.artifacts
            results[Path(path).name] = evaluate(
                hyps, refs, args.profile, meteor=not args.no_meteor, clean=args.clean,
                n_refs=args.n_refs, vshuman=args.vshuman, n_lines=args.n_lines, artifacts_dir=art,
                progress=_progress(path))
            if ranker is not None:
                results[Path(path).name] |= ranker_means(ranker, contexts, hyps, args.n_lines, args.max_cxt_turn)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _emit(results, args)
    return 0


def _load_ranker(args):
    from lsp_model.checkpoint import CheckpointError
    from lsp_rank.ranker import load_ranker
    try:
        return load_ranker(args.ranker, args.ranker_dtype)
    except CheckpointError as e:
        raise ValueError(str(e)) from None


def ranker_means(ranker, contexts: list[str], hyps: list[str], n_lines: int | None = -1,
                 max_cxt_turn: int | None = None) -> dict:
    """{"ranker": mean ranker score of the hypotheses (an ensemble's final), "ranker_scores":
    {member: mean}}: a learned human-feedback metric (DialogRPT) beside NIST/BLEU/METEOR."""
    from lsp_rank.inputs import split_context
    n = len(hyps) if n_lines is None or n_lines < 0 else min(n_lines, len(hyps))
    scores = ranker.score([split_context(c) for c in contexts[:n]], [[h] for h in hyps[:n]], max_cxt_turn)
    means = {k: sum(s[k][0] for s in scores) / max(1, n) for k in scores[0]} if n else {}
    return {"ranker": means.get("final"), "ranker_scores": means}


# -- the original's file formats --------------------------------------------------------------
def read_test_refs(path: str | Path) -> dict[str, list[str]]:
    """DSTC ``test.refs``: ``key \\t score|ref \\t score|ref ...`` -> {key: [ref, ...]}."""
    out = {}
    for line in read_lines(path):
        cells = line.split("\t")
        out[cells[0]] = [strip_score(c) for c in cells[1:]]
    return out


def read_submission(path: str | Path, line_keys: list[str]) -> dict[str, str]:
    """Hypotheses by key.

    A DSTC-7 submission (7 tab-separated columns ``hash subreddit conv_id score turn context
    response``) names its keys; a plain file (DialoGPT) is line-aligned with ``line_keys``
    (``test_real.keys.txt`` = the sorted keys), which must then have the same length.
    """
    lines = read_lines(path)
    if lines and all(line.count("\t") >= 6 for line in lines):
        return {c[0]: c[-1] for c in (line.split("\t") for line in lines)}
    check_same_length(len(lines), len(line_keys), str(path), "the key list")
    return dict(zip(line_keys, lines))


def print_original_report(scores: dict) -> None:
    """The lines the original ``dstc.py`` printed (same names and order)."""
    print("n_lines =", scores["n_lines"])
    print("NIST =", scores["nist"])
    print("BLEU =", scores["bleu"])
    print("METEOR =", scores["meteor"] if scores["meteor"] is not None else "n/a")
    print("entropy =", scores["entropy"])
    print("diversity =", scores["distinct"])
    print("avg_len =", scores["avg_len"])


@command("dstc.py")
def dstc_main(argv: list[str] | None = None) -> int:
    """``dstc.py submitted --refs test.refs --keys keys.2k.txt --clean`` (original flags)."""
    p = argparse.ArgumentParser(prog="dstc.py", description="Evaluate one DSTC-7 / DialoGPT system.")
    p.add_argument("submitted", help="hypotheses: plain lines (DialoGPT) or 7-column DSTC-7 submission")
    p.add_argument("--clean", "-c", action="store_true", help="apply clean_str (the paper's setting)")
    p.add_argument("--n_lines", "-n", type=int, default=-1)
    p.add_argument("--n_refs", "-r", type=int, default=6)
    p.add_argument("--vshuman", "-v", type=int, default=1)
    p.add_argument("--refs", "-g", default="dstc/test.refs", help="test.refs: key \\t score|ref ...")
    p.add_argument("--keys", "-k", default="keys/test.2k.txt", help="keys to evaluate")
    p.add_argument("--hyp_keys", help="line order of a plain hypothesis file "
                   "(default: the sorted --keys, i.e. test_real.keys.txt)")
    _add_common(p)
    args = p.parse_args(argv)
    keys = [k.strip() for k in read_lines(args.keys) if k.strip()]
    line_keys = [k.strip() for k in read_lines(args.hyp_keys)] if args.hyp_keys else sorted(keys)
    try:
        hyp_by_key = read_submission(args.submitted, line_keys)
        refs_by_key = read_test_refs(args.refs)
        wanted = set(keys)
        sel = sorted(k for k in hyp_by_key if k in wanted)  # the original scored in sorted key order
        missing = [k for k in sel if k not in refs_by_key]
        if missing:
            raise ValueError(f"{len(missing)} of {len(sel)} keys have no references in {args.refs} "
                             f"(first: {missing[0]})")
        print(f"evaluating {args.submitted}")
        scores = evaluate([hyp_by_key[k] for k in sel], [refs_by_key[k] for k in sel], args.profile,
                          meteor=not args.no_meteor, clean=args.clean, n_refs=args.n_refs,
                          vshuman=args.vshuman, n_lines=args.n_lines, artifacts_dir=args.artifacts,
                          progress=_progress(args.submitted))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_original_report(scores)
    _emit({Path(args.submitted).name: scores}, args)
    return 0


def filter_resp_lines(lines: list[str], n_keys: int) -> list[str]:
    """Hypothesis lines of a ``*.resp.txt``.

    The original ran ``grep -v "^Val" | sed '/^$/d'``: deleting blank lines shifted every later
    hypothesis onto the wrong key.  Rule here: blank lines are kept (empty hypotheses); lines
    starting with ``Val`` (decoder log lines) are dropped only while the file has more lines
    than keys, so a real response such as "Valid point" is never removed from an aligned file.
    """
    if len(lines) <= n_keys:
        return lines
    return [ln for ln in lines if not ln.startswith("Val")]


@command("batch_eval.py")
def batch_eval_main(argv: list[str] | None = None) -> int:
    """``batch_eval.py --input_dir ./``: evaluate every ``*.resp.txt`` in a folder."""
    p = argparse.ArgumentParser(prog="batch_eval.py", description="Evaluate every *.resp.txt in a folder.")
    p.add_argument("--input_dir", default="./")
    p.add_argument("--data_type", default="test", help="unused (kept from the original)")
    p.add_argument("--refs", default="./data/test.refs.txt")
    p.add_argument("--keys", default="./data/keys.2k.txt")
    p.add_argument("--hyp_keys", help="line order of the hypotheses (default: sorted --keys)")
    p.add_argument("--profile", default="dialogpt", choices=sorted(PROFILES))
    p.add_argument("--no-meteor", action="store_true")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    folder = Path(args.input_dir)
    keys = [k.strip() for k in read_lines(args.keys) if k.strip()]
    n_line_keys = len(read_lines(args.hyp_keys)) if args.hyp_keys else len(keys)
    (folder / "resp").mkdir(exist_ok=True)
    (folder / "eval").mkdir(exist_ok=True)
    results, status = {}, 0
    for path in sorted(folder.glob("*.resp.txt")):
        filtered = folder / "resp" / path.name
        filtered.write_text("".join(ln + "\n" for ln in filter_resp_lines(read_lines(path), n_line_keys)),
                            encoding="utf-8")
        cmd = [str(filtered), "--refs", args.refs, "--keys", args.keys, "--clean", "--profile", args.profile,
               "--json", str(folder / "eval" / (path.name + ".eval.json"))]
        cmd += ["--hyp_keys", args.hyp_keys] if args.hyp_keys else []
        cmd += ["--no-meteor"] if args.no_meteor else []
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = dstc_main(cmd)
        (folder / "eval" / (path.name + ".eval.txt")).write_text(buf.getvalue(), encoding="utf-8")
        if rc == 0:
            results[path.name] = json.loads((folder / "eval" / (path.name + ".eval.json")).read_text())
        status = status or rc
    if results:
        print(format_table(results, fmt="markdown" if args.markdown else "text"))
    else:
        print(f"no *.resp.txt evaluated in {folder}", file=sys.stderr)
    return status


@command("extract_human.py")
def extract_human_main(argv: list[str] | None = None) -> int:
    """``extract_human.py``: reference #2 of each key (the held-out human response) as a system."""
    p = argparse.ArgumentParser(prog="extract_human.py", description=__doc__)
    p.add_argument("--refs", default="./data/test.refs.txt", help="test.refs: key \\t score|ref ...")
    p.add_argument("--keys", default="./data/processed/test_real.keys.txt", help="output line order")
    p.add_argument("--out", default="human.resp.txt")
    p.add_argument("--vshuman", type=int, default=1, help="which reference is the human one")
    args = p.parse_args(argv)
    refs = read_test_refs(args.refs)
    out = []
    for k in (k.strip() for k in read_lines(args.keys)):
        r = refs.get(k, [])
        # Rule: a key without that reference gives an empty line (the original raised IndexError).
        out.append(r[args.vshuman] if len(r) > args.vshuman else "")
    Path(args.out).write_text("".join(h + "\n" for h in out), encoding="utf-8")
    print(f"wrote {len(out)} human responses to {args.out}")
    return 0
