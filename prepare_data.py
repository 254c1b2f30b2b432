"""The script of `dialogpt prepare` (same flags): your conversations -> DialoGPT training TSV,
validation TSV and multi-reference test files. The logic is lsp_data/prepare_cli.py; see docs/own-data.md.

    python prepare_data.py --input chats.jsonl --out data/mine
"""
import sys

from lsp_data.prepare_cli import main, options, parse_args  # noqa: F401  (tests and scripts use these)

if __name__ == "__main__":
    sys.exit(main())
