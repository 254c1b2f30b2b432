"""The script of `dialogpt demo` (same flags): the whole DialoGPT pipeline in one offline command,
on real data. The logic is pipeline/cli.py; see docs/demo.md.

    python demo.py                       # chitchat -> prepro -> train -> decode -> DSTC metrics -> report
"""
import sys

from pipeline.cli import main, parse_args  # noqa: F401  (tests and scripts use these)

if __name__ == "__main__":
    sys.exit(main())
