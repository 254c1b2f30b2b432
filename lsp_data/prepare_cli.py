"""Your conversations -> DialoGPT training TSV, validation TSV and multi-reference test files.

    python prepare_data.py --input chats.jsonl --out data/mine
    python prepare_data.py --input logs.csv --conv_col session --speaker_col who --text_col message --out data/mine
    python prepare_data.py --input convai2.txt --format parlai --paper_filters --out data/mine
    python prepare_data.py --input my_saved_dataset/ --messages_col conversation --out data/mine
    python prepare_data.py feedback --input thumbs.jsonl --output pairs.jsonl    # rank.py train pairs

Writes under --out: train.tsv (prepro.py --corpus), valid.tsv (LSP_train.py --eval_input_file),
test.contexts.tsv (decode.py --input), test.refs.tsv (python -m dstc --refs) and data.json (the
summary). Formats, windows, filters and the split: docs/own-data.md. Logic: lsp_data/formats.py
(readers) and lsp_data/conversations.py (windows, filters, split, writers).
"""
from __future__ import annotations

import argparse
import itertools
import sys

from lsp_io.cli import command
from lsp_data.bounded import DEFAULT_LIMIT
from lsp_data.conversations import FILTERS, TRAIN_ON, Options, PrepareError, format_summary, prepare
from lsp_data.datafolder import existing_outputs
from lsp_data.formats import ASSISTANT, FORMATS, Columns, FormatError, expand_inputs, read
from lsp_model.defaults import MAX_SEQ_LEN, SEED


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--input", nargs="+", action="extend", required=True, metavar="FILE",
      help="files, globs ('logs/*.jsonl') or save_to_disk folders; repeatable, all are read in order")
    a("--out", default="data/mine", help="output folder")
    a("--overwrite", action="store_true", help="replace the output files of an earlier import in --out")
    a("--max_record_bytes", type=int, default=DEFAULT_LIMIT,
      help="a record (line, CSV row) over this is skipped unread and counted (memory stays bounded)")
    a("--format", choices=FORMATS, default="auto", help="default: from the name / first line")
    g = p.add_argument_group("fields (JSON keys, table columns, datasets columns)")
    g.add_argument("--messages_col", default="messages", help="OpenAI-style list of {role, content}")
    g.add_argument("--turns_col", default="turns", help="list of strings or {speaker, text}")
    g.add_argument("--conv_col", default="conversation_id", help="rows per turn: conversation id")
    g.add_argument("--speaker_col", default="speaker")
    g.add_argument("--text_col", default="text")
    g = p.add_argument_group("targets and windows")
    g.add_argument("--train_on", choices=TRAIN_ON, default="auto",
                   help="auto: the assistant's turns where there is an assistant, else all")
    g.add_argument("--assistant_speaker", default=ASSISTANT, help="speaker/role of the assistant")
    g.add_argument("--system", choices=("drop", "context"), default="drop", help="system messages")
    g.add_argument("--max_seq_len", type=int, default=MAX_SEQ_LEN, help="token budget of a line (prepro's)")
    g.add_argument("--max_context_turns", type=int, default=None)
    g.add_argument("--tokenizer", default=None, help="tokenizer or model folder (default: GPT-2)")
    g = p.add_argument_group("filters and split")
    g.add_argument("--filter", action="append", choices=FILTERS, default=[], help="repeatable")
    g.add_argument("--paper_filters", action="store_true", help="all of: " + ", ".join(FILTERS))
    g.add_argument("--min_words", type=int, default=2)
    g.add_argument("--max_words", type=int, default=30)
    g.add_argument("--no_dedup", action="store_true", help="keep exact duplicate lines")
    g.add_argument("--valid_frac", type=float, default=0.02)
    g.add_argument("--test_frac", type=float, default=0.02)
    g.add_argument("--max_valid", type=int, default=2000, help="validation lines at most")
    g.add_argument("--max_test", type=int, default=1000, help="test references at most")
    g.add_argument("--seed", type=int, default=SEED)
    g.add_argument("--strict", action="store_true", help="stop at the first malformed record")
    return p.parse_args(argv)


def options(a: argparse.Namespace) -> Options:
    return Options(train_on=a.train_on, assistant=a.assistant_speaker, system=a.system,
                   max_seq_len=a.max_seq_len, max_context_turns=a.max_context_turns,
                   filters=FILTERS if a.paper_filters else tuple(dict.fromkeys(a.filter)),
                   min_words=a.min_words, max_words=a.max_words, dedup=not a.no_dedup,
                   valid_frac=a.valid_frac, test_frac=a.test_frac, max_valid=a.max_valid,
                   max_test=a.max_test, seed=a.seed, strict=a.strict)


@command("prepare_data.py")
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["feedback"]:  # a thumbs/preference log -> ranker pairs (docs/ranking.md)
        from lsp_rank.feedback import main as feedback_main
        return feedback_main(argv[1:])
    a = parse_args(argv)
    cols = Columns(messages=a.messages_col, turns=a.turns_col, speaker=a.speaker_col, text=a.text_col,
                   conversation=a.conv_col)
    try:
        if a.max_record_bytes < 1:
            raise PrepareError(f"--max_record_bytes {a.max_record_bytes} must be >= 1")
        there = existing_outputs(a.out)
        if there and not a.overwrite:
            raise PrepareError(f"{a.out} already holds {', '.join(there)} (pass --overwrite to replace them)")
        paths = expand_inputs(a.input)
        tok = None
        if a.tokenizer:
            from lsp_model.tokenizer import load_tokenizer
            tok = load_tokenizer(a.tokenizer)
        records = itertools.chain.from_iterable(read(path, a.format, cols, a.max_record_bytes) for path in paths)
        summary = prepare(records, a.out, options(a), tok)
    except (PrepareError, FormatError, OSError) as e:
        print(f"prepare_data: error: {e}", file=sys.stderr)
        return 1
    print(f"read {len(paths)} input(s): {', '.join(map(str, paths))}")
    print(format_summary(summary, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
