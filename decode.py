"""The script of `dialogpt decode` (same flags): decode a file of dialogue contexts, one reply per
line. The logic is dialogpt/decode.py; see docs/decoding.md.

    python decode.py --model models/medium --input test.tsv --output hyp.txt --batch_size 32
"""
import sys

from dialogpt.decode import gen_config_from_args, main, parse_args  # noqa: F401  (tests and scripts use these)

if __name__ == "__main__":
    sys.exit(main())
