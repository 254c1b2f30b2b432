"""The original's prepro.py, and `dialogpt prepro` (same flags): TSV -> DialoGPT feature DB
(shelve of gzip-JSON chunks). The logic is lsp_data/prepro.py; see docs/data.md.

    python prepro.py --corpus data/train.tsv --max_seq_len 128 [--reverse] [--two_turn] [--workers 4]
    python prepro.py --dump data/train.128len.db > features.jsonl
"""
import sys

from lsp_data.prepro import build_db, main  # noqa: F401  (build_db re-exported for scripts)

if __name__ == "__main__":
    sys.exit(main())
