"""Reddit dumps -> DialoGPT conversation data (train.tsv, test.refs.txt).

A re-implementation of the original DialoGPT ``reddit_extractor``: per-month
``extract`` (RS/RC dumps -> filtered TSV chunks) and ``conv`` (chunks ->
``sid,pid,cid<TAB>src<TAB>tgt`` lines), plus ``create-multiref``.  In its
default compatibility mode every output file is byte-identical to the
original's; see docs/reddit.md for the quirks this keeps.

Run ``python -m reddit_extractor --help`` or use the Makefile in this folder.
"""
