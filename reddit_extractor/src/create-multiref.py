"""Drop-in for the original ``src/create-multiref.py --data --testids --out``."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from reddit_extractor.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(['multiref'] + sys.argv[1:]))
