"""The demo's Reddit data source (`--data small|full`): check the dumps are there, run
`make -C reddit_extractor SIZE=.. train`, then hold out a seeded test split of its train.tsv.

The extraction itself is reddit_extractor's; this module only drives it and splits its output
into the files every demo data source writes (train.tsv, test.contexts.tsv, test.refs.tsv,
data.json), like lsp_data.chitchat and lsp_data.dummy do for theirs.
"""
from __future__ import annotations

from pathlib import Path

from .build import StageError, count_lines, run, say

# First and last training month of each SIZE (the month lists are the Makefile's TRAIN_MONTHS_*).
TRAIN_MONTHS = {"small": ("2005-12", "2009-12"), "full": ("2005-12", "2017-11")}


def dumps_folder(repo: Path) -> Path:
    return repo / "reddit_extractor" / "data" / "reddit"


def missing_dumps(size: str, folder: Path) -> list[str]:
    """RS_/RC_ dumps of the SIZE's training months that are not in `folder`."""
    first, last = TRAIN_MONTHS[size]
    y, m = map(int, first.split("-"))
    from reddit_extractor.dumps import find_dump  # the extractor's own finder: its extensions, not a copy
    missing = []
    while f"{y:04d}-{m:02d}" <= last:
        for kind in ("RS", "RC"):
            if find_dump(folder, kind, f"{y:04d}-{m:02d}") is None:
                missing.append(f"{kind}_{y:04d}-{m:02d}.zst")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return missing


def reddit_data(s, files: dict[str, Path], threads: int | None) -> dict:
    """Dumps checked first (nothing is run or downloaded when any is missing), then `make ...
    train` with its exit status checked (the original ignored it and trained on an empty file),
    then the held-out split."""
    dumps = dumps_folder(s.repo)
    missing = missing_dumps(s.data, dumps)
    if missing:
        raise StageError(
            f"data: {len(missing)} Reddit dump file(s) of SIZE={s.data} are missing from {dumps} (the "
            f"Makefile's S folder), e.g. {', '.join(missing[:4])}. pushshift is offline: fetch the RS_/RC_ "
            f"monthly dumps {' .. '.join(TRAIN_MONTHS[s.data])} from an archive mirror (docs/reddit.md), "
            f"then run the demo again.")
    raw_dir = (s.out / "data" / "reddit").resolve()
    say(f"data: Reddit extraction SIZE={s.data} (dumps in {dumps})")
    run(s.out, "data", ["make", "-C", s.repo / "reddit_extractor", f"SIZE={s.data}", f"DATA={raw_dir}",
                        f"WORKERS={s.workers}", f"PYTHON={s.python[0]}", "train"],
        repo=s.repo, threads=threads, quiet=s.quiet)
    raw = raw_dir / "train.tsv"
    if not raw.is_file() or raw.stat().st_size == 0:
        raise StageError(f"{raw}: make exited 0 but wrote no training lines")
    return split_held_out(raw, files, s.n_test, s.seed)


def split_held_out(raw: Path, files: dict[str, Path], n_test: int, seed: int) -> dict:
    """Stream `raw` into train.tsv, holding out about n_test lines chosen by a seeded hash
    (one pass, constant memory: the full set is ~27 GB)."""
    from lsp_io.atomic import atomic_file
    from lsp_data.contexts import strip_weight
    from lsp_data.conversations import split_value
    from lsp_data.datafolder import write_heldout, write_summary
    from lsp_data.tsv import TURN_SEP
    total = count_lines(raw)
    share = min(1.0, 2 * n_test / max(1, total))  # hold out ~share of the lines, stop at n_test
    tests, kept = [], 0
    with open(raw, encoding="utf-8", errors="replace") as src, atomic_file(files["train"], "w") as out:
        for i, line in enumerate(src):
            parts = line.rstrip("\r\n").split("\t")
            if (len(tests) < n_test and len(parts) == 2 and parts[1].startswith("1.0 ")
                    and split_value(f"reddit:{i}", seed) < share):
                ctx = [strip_weight(t) for t in parts[0].split(TURN_SEP)]
                tests.append((f"reddit:{i + 1}", ctx, [strip_weight(parts[1])]))
                continue
            out.write(line)
            kept += 1
    if not tests:
        raise StageError(f"{raw}: no line could be held out for testing")
    write_heldout(files["train"].parent, tests)
    stats = {"source": str(raw), "train_lines": kept, "test_examples": len(tests), "seed": seed}
    write_summary(files["train"].parent, stats)
    return stats
