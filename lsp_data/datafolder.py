"""The data folder every data source writes (prepare_data.py, lsp_data.chitchat, lsp_data.dummy,
the demo's Reddit source): the one owner of its file names and of the held-out writers.

    train.tsv          `w turn EOS w turn ...<TAB>w response`   prepro.py --corpus
    valid.tsv          `turn EOS turn ...<TAB>ref`              LSP_train.py --eval_input_file (prepare_data)
    test.contexts.tsv  `key<TAB>turn EOS turn ...`              decode.py --input (DSTC form)
    test.refs.tsv      `turn EOS turn ...<TAB>ref<TAB>...`      python -m dstc --refs, line-aligned
    data.json          counts and the settings that produced them
"""
from __future__ import annotations

import json
from pathlib import Path

from lsp_io.atomic import atomic_file

from .tsv import TURN_SEP, format_eval_line

FILES = {"train": "train.tsv", "valid": "valid.tsv", "contexts": "test.contexts.tsv",
         "refs": "test.refs.tsv", "summary": "data.json"}


def data_file(out_dir: str | Path, kind: str) -> Path:
    """The path of one of FILES (by its key) in a data folder."""
    return Path(out_dir) / FILES[kind]


def existing_outputs(out_dir: str | Path) -> list[str]:
    """The data files already in `out_dir` (an import refuses to replace them unasked)."""
    return [name for name in FILES.values() if (Path(out_dir) / name).exists()]


def write_heldout(out_dir: str | Path, examples: list[tuple[str, list[str], list[str]]]) -> None:
    """The test files from (key, context turns, references), both line-aligned."""
    with atomic_file(data_file(out_dir, "contexts"), "w") as f:
        f.writelines(f"{key}\t{TURN_SEP.join(ctx)}\n" for key, ctx, _ in examples)
    with atomic_file(data_file(out_dir, "refs"), "w") as f:
        f.writelines(format_eval_line(ctx, refs) + "\n" for _, ctx, refs in examples)


def write_summary(out_dir: str | Path, summary: dict) -> None:
    with atomic_file(data_file(out_dir, "summary"), "w") as f:
        f.write(json.dumps(summary, indent=2) + "\n")
