"""The script of `dialogpt chat` (same flags): chat with a DialoGPT checkpoint on the terminal.
The logic is lsp_model/chat_cli.py; see docs/decoding.md.

    python interact.py --model models/medium
"""
import sys

from lsp_model.chat_cli import gen_config_from_args, main, parse_args  # noqa: F401  (tests and scripts use these)

if __name__ == "__main__":
    sys.exit(main())
