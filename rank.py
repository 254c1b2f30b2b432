"""Rank candidate replies by predicted human feedback with DialogRPT, or train a ranker.

    python rank.py --ranker updown.pth --input cands.jsonl --output scores.jsonl [--max_cxt_turn K] [--batch_size N]
    python rank.py train --init models/small --pairs pairs.jsonl --output_dir rankers/mine

See docs/ranking.md; the logic lives in lsp_rank/.
"""
import sys

from lsp_rank.cli import main

if __name__ == "__main__":
    sys.exit(main())
