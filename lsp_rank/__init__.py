"""DialogRPT: rank dialogue responses by predicted human feedback (Gao et al., EMNLP 2020).

model     one ranker head (GPT-2 body + Linear(d, 1)) from any of the four checkpoint forms
ensemble  several heads combined as DialogRPT's ensemble.yml says (prior x cond)
score     batched, length-bucketed scoring of (context, candidate) pairs
rerank    the reranker object decode.py / interact.py / serve.py call (MMI-compatible)
inputs    rank.py's input files (JSONL and TSV)
train     pairwise training on (context, pos, neg) JSONL with gpt2_training's machinery
"""
