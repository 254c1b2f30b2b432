"""Drop-in for the original ``src/reddit.py``: same command lines, same files.

Run from ``reddit_extractor/`` as the Makefile does, e.g.
``python src/reddit.py 2011-01 --task=extract --keep_keys=... --reddit_input data/reddit --reddit_output data/out/test``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from reddit_extractor.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
