"""``python -m dstc --refs refs.tsv --hyp hyp.txt [--profile dialogpt|dstc7] [--json OUT]``."""
import sys

from .cli import main

sys.exit(main())
