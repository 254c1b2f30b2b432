"""Original entry point `dstc/extract_human.py` (same name and flags); see :mod:`dstc.cli`."""
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a script: put the repository root, not dstc/, first on the path.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from dstc.cli import extract_human_main as main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
