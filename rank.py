"""`dialogpt rank` (same flags): rank candidate replies by predicted human feedback with
DialogRPT, or train a ranker. The logic is lsp_rank/cli.py; see docs/ranking.md.

    python rank.py --ranker updown.pth --input cands.jsonl --output scores.jsonl [--max_cxt_turn K] [--batch_size N]
    python rank.py train --init models/small --pairs pairs.jsonl --output_dir rankers/mine
"""
import sys

from lsp_rank.cli import main

if __name__ == "__main__":
    sys.exit(main())
