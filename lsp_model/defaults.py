"""The original's defaults that several stages share, each defined once.

Light (no torch): argument parsers import it before the heavy imports.
"""
SEED = 42          # the original's --seed: training, data splits, decoding
MAX_SEQ_LEN = 128  # the original's prepro --max_seq_len / LSP_train --max_seq_length
HISTORY_BUDGET = 256  # chat (interact.py, serve.py): context tokens the model sees, oldest turns dropped
