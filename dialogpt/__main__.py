"""``python -m dialogpt SUBCOMMAND ...``: the same as the ``dialogpt`` command."""
import sys

from .cli import main

sys.exit(main())
