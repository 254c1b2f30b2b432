"""The script of `dialogpt decode` (same flags): decode a file of dialogue contexts, one reply per
line. The logic is lsp_model/decode_cli.py; see docs/decoding.md.

    python decode.py --model models/medium --input test.tsv --output hyp.txt --batch_size 32
"""
import sys

from lsp_model.decode_cli import gen_config_from_args, main, parse_args  # noqa: F401  (tests and scripts use these)

if __name__ == "__main__":
    sys.exit(main())
