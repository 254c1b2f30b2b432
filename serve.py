"""The script of `dialogpt serve` (same flags): an OpenAI-compatible API with continuous batching,
and a web chat. The logic is lsp_serve/cli.py; see docs/serving.md.

    python serve.py --model models/medium                      # web chat at http://127.0.0.1:8000/
"""
import sys

from lsp_serve.cli import build, main, parse_args  # noqa: F401  (tests and scripts use these)

if __name__ == "__main__":
    sys.exit(main())
