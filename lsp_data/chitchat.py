"""chitchat-dataset (7,168 real human chats, MIT) -> DialoGPT training TSV + a held-out test split.

Turns. A turn is one speaker's run of consecutive messages, joined by a space (what the package's
own ConversationDataset does). Whitespace is collapsed and a stand-alone word `EOS` is lower-cased,
because prepro splits contexts on the literal ` EOS `. The text is otherwise kept as typed (no
Reddit-style TweetTokenizer spacing): dstc's clean_str normalises hypotheses and references alike.

Training lines. Each conversation is cut into consecutive segments that fit `max_seq_len` GPT-2
tokens (sum of turn lengths + one EOS per turn), in the original's format

    0.0 turn_s EOS 1.0 turn_s+1 EOS ... EOS 1.0 turn_e-1 <TAB> 1.0 turn_e

The first turn of a segment is context only (weight 0.0); every later turn is a training target
(weight 1.0). The next segment starts with the previous segment's last turn as its context, so
every turn after the conversation's first is trained exactly once, with the turns before it as
context. Fitting the budget here means prepro emits one feature per line and its loader drops
nothing (prepro's overflow windows are longer than max_seq_len and would be discarded). A turn
that cannot follow its predecessor within the budget starts a new segment (it is not trained);
a turn longer than the budget alone is skipped. Both are counted.

Held-out split. The `n_test` conversations with the lowest seeded hash of their id
(lsp_data.conversations.split_value, the split prepare_data.py uses) never reach train.tsv.
From each, one target turn (<= 48 tokens) at a random position >= 1 is the reference; its
context is the up to `max_context_turns` turns before it, oldest dropped until it fits
`max_context_tokens` (leaving room to generate within n_positions). Written as:
  test.contexts.tsv  `key <TAB> turn EOS turn ...`   (DSTC form, input of decode.py)
  test.refs.tsv      `turn EOS turn ... <TAB> ref`   (refs of `python -m dstc`, and a src<TAB>tgt
                                                      eval file for LSP_train.py)
  data.json          counts and the settings that produced them.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from lsp_io.atomic import atomic_file
from lsp_data.conversations import clean_text, split_value
from lsp_data.datafolder import data_file, write_heldout, write_summary
from lsp_data.tsv import format_line as tsv_line
from lsp_model.tokenizer import encode_batch, file_sha256, load_tokenizer
from lsp_model.defaults import MAX_SEQ_LEN, SEED
from lsp_io.cli import command

clean_turn = clean_text


class DataError(ValueError):
    """Input data that cannot be converted; the message names the file and what is wrong."""


def dataset_path() -> Path:
    try:
        import chitchat_dataset
    except ImportError:
        raise DataError("the chitchat-dataset package is not installed (pip install chitchat-dataset)") from None
    return Path(chitchat_dataset.__file__).parent / "dataset.json"


def load_conversations(path: str | Path | None = None) -> dict[str, list[str]]:
    """{conversation id: [turn text, ...]} in file order; empty messages and turns dropped."""
    path = Path(path) if path is not None else dataset_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read the chitchat dataset ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path}: expected a non-empty JSON object of conversations")
    convs = {}
    for cid, conv in raw.items():
        try:
            turns = [clean_turn(" ".join(m["text"] for m in run)) for run in conv["messages"]]
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}: conversation {cid}: expected messages as lists of "
                            f"{{'text': ...}} ({type(e).__name__}: {e})") from None
        convs[cid] = [t for t in turns if t]
    return convs


def split_ids(ids: list[str], n_test: int, seed: int) -> tuple[list[str], list[str]]:
    """(train ids, test ids): the n_test ids with the lowest seeded hash held out."""
    test = set(sorted(ids, key=lambda i: (split_value(i, seed), i))[:n_test])
    return [i for i in ids if i not in test], [i for i in ids if i in test]


def segments(lens: list[int], max_len: int) -> tuple[list[tuple[int, int]], int, int]:
    """Cut a conversation with turn token lengths `lens` into [start, end) turn ranges whose
    sum(len + 1) <= max_len and that hold >= 2 turns. Returns (ranges, n_untrained, n_too_long)."""
    out, untrained, too_long = [], 0, 0
    start, total = None, 0
    for j, n in enumerate(lens):
        if n + 1 > max_len:  # can be neither context nor target
            too_long += 1
            if start is not None and j - start >= 2:
                out.append((start, j))
            start, total = None, 0
            continue
        if start is None:
            start, total = j, n + 1
            continue
        if total + n + 1 <= max_len:
            total += n + 1
            continue
        if j - start >= 2:
            out.append((start, j))
            # the last turn becomes the next segment's context, if both fit together
            if lens[j - 1] + 1 + n + 1 <= max_len:
                start, total = j - 1, lens[j - 1] + 1 + n + 1
                continue
        untrained += 1  # turn j does not fit after its predecessor: it becomes pure context
        start, total = j, n + 1
    if start is not None and len(lens) - start >= 2:
        out.append((start, len(lens)))
    return out, untrained, too_long


def format_line(turns: list[str]) -> str:
    """`0.0 t0 EOS 1.0 t1 ... <TAB> 1.0 tN`: the first turn is context, every later one a target."""
    return tsv_line(turns, [0.0] + [1.0] * (len(turns) - 1))


def test_example(turns: list[str], lens: list[int], rng: random.Random, max_context_turns: int,
                 max_context_tokens: int, max_ref_tokens: int = 48) -> tuple[int, list[str], str] | None:
    """(target index, context turns, reference) or None when no target has a context that fits."""
    targets = list(range(1, len(turns)))
    rng.shuffle(targets)
    for i in targets:
        if lens[i] > max_ref_tokens:  # a monologue is no reference for a 32-token reply
            continue
        lo = max(0, i - max_context_turns)
        while lo < i and sum(n + 1 for n in lens[lo:i]) > max_context_tokens:
            lo += 1
        if lo < i:
            return i, turns[lo:i], turns[i]
    return None


def convert(out_dir: str | Path, n_test: int = 200, seed: int = SEED, max_seq_len: int = MAX_SEQ_LEN,
            max_context_turns: int = 3, max_context_tokens: int = 64, path: str | Path | None = None,
            tokenizer=None, max_conversations: int | None = None) -> dict:
    """Write train.tsv, test.contexts.tsv, test.refs.tsv and data.json under `out_dir`."""
    out = Path(out_dir)
    src = Path(path) if path is not None else dataset_path()
    convs = load_conversations(src)
    convs = {k: v for k, v in convs.items() if len(v) >= 2}
    if max_conversations is not None:
        convs = dict(list(convs.items())[:max_conversations])
    if len(convs) <= n_test:
        raise DataError(f"{src}: only {len(convs)} conversations with >= 2 turns; "
                        f"cannot hold out {n_test} for testing")
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    train_ids, test_ids = split_ids(list(convs), n_test, seed)

    stats = dict(source=str(src.name), conversations=len(convs), train_conversations=len(train_ids),
                 test_conversations=len(test_ids), train_lines=0, train_turns_trained=0,
                 turns_untrained=0, turns_too_long=0, test_examples=0, n_test=n_test, seed=seed,
                 max_seq_len=max_seq_len, max_context_turns=max_context_turns,
                 max_context_tokens=max_context_tokens, max_conversations=max_conversations)
    with atomic_file(data_file(out, "train"), "w") as f:
        for cid in train_ids:
            turns = convs[cid]
            ranges, untrained, too_long = segments([len(x) for x in encode_batch(tok, turns)], max_seq_len)
            stats["turns_untrained"] += untrained
            stats["turns_too_long"] += too_long
            for a, b in ranges:
                f.write(format_line(turns[a:b]) + "\n")
                stats["train_lines"] += 1
                stats["train_turns_trained"] += b - a - 1
    if stats["train_lines"] == 0:
        raise DataError(f"{src}: no training line fits max_seq_len={max_seq_len}")

    rng = random.Random(seed + 1)
    examples = []
    for cid in test_ids:
        turns = convs[cid]
        ex = test_example(turns, [len(x) for x in encode_batch(tok, turns)], rng,
                          max_context_turns, max_context_tokens)
        if ex is not None:
            examples.append((f"{cid}:{ex[0]}", ex[1], [ex[2]]))
    if not examples:
        raise DataError(f"{src}: no held-out context fits max_context_tokens={max_context_tokens}")
    write_heldout(out, examples)
    stats["test_examples"] = len(examples)
    stats["train_sha256"] = file_sha256(data_file(out, "train"))
    write_summary(out, stats)
    return stats


@command("python -m lsp_data.chitchat")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out_dir", default="data/chitchat")
    p.add_argument("--n_test", type=int, default=200)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--max_seq_len", type=int, default=MAX_SEQ_LEN)
    p.add_argument("--max_context_turns", type=int, default=3)
    p.add_argument("--max_context_tokens", type=int, default=64)
    p.add_argument("--dataset", default=None, help="a dataset.json (default: the installed package's)")
    a = p.parse_args(argv)
    try:
        stats = convert(a.out_dir, a.n_test, a.seed, a.max_seq_len, a.max_context_turns,
                        a.max_context_tokens, a.dataset)
    except DataError as e:
        print(f"chitchat: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
