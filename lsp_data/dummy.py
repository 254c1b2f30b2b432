"""The original's dummy single-turn set, generated on the fly instead of shipped as a 388 KB file.

The original `data/dummy_data.tsv` held 10,000 `src<TAB>tgt` lines over 6 questions with templated
answers ("what are you doing for a living ? / i am a admin ."), lower-cased and space-tokenised,
and `data/prepare4db.sh` weighted them as `0.0 src<TAB>1.0 tgt`. The same 6 questions and answer
templates are filled here from small word lists with `random.Random(seed)`.

Outputs (the same files as lsp_data.chitchat, so the demo treats both alike):
  train.tsv          `0.0 question<TAB>1.0 answer`
  test.contexts.tsv  `dummy:<i><TAB>question`          (DSTC form, input of decode.py)
  test.refs.tsv      `question<TAB>answer<TAB>answer ...` (several valid answers as references)
  data.json          counts and settings
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from lsp_io.atomic import atomic_file
from lsp_data.datafolder import data_file, write_heldout, write_summary
from lsp_data.tsv import format_line
from lsp_model.defaults import SEED
from lsp_io.cli import command

PLACES = ["seattle", "new york", "london", "paris", "tokyo", "beijing", "berlin", "boston", "chicago",
          "the city", "a small town", "the countryside"]
COLORS = ["red", "blue", "green", "yellow", "purple", "black", "white", "orange", "pink", "grey"]
FEELINGS = ["good", "great", "fine", "well", "okay", "not bad", "pretty good", "very well"]
AMOUNTS = [1, 5, 10, 20, 50, 100, 500, 1000]
JOBS = ["teacher", "doctor", "nurse", "student", "admin", "lawyer", "engineer", "programmer", "chef",
        "driver", "writer", "farmer", "researcher", "manager"]

# question -> (answer template, filler for {x})
TEMPLATES = {
    "where do you live ?": ("i live in {x} .", lambda r: r.choice(PLACES)),
    "how old are you ?": ("i am {x} years old .", lambda r: str(r.randint(5, 90))),
    "what is your favorite color ?": ("my favorite color is {x} .", lambda r: r.choice(COLORS)),
    "how much money do you have ?": ("i have {x} dollars .", lambda r: str(r.choice(AMOUNTS))),
    "how are you doing ?": ("i am doing {x} .", lambda r: r.choice(FEELINGS)),
    "what are you doing for a living ?": ("i am a {x} .", lambda r: r.choice(JOBS)),
}
QUESTIONS = list(TEMPLATES)


def answer(question: str, rng: random.Random) -> str:
    template, fill = TEMPLATES[question]
    return template.format(x=fill(rng))


def pairs(n: int, seed: int = SEED) -> list[tuple[str, str]]:
    """`n` (question, templated answer) pairs, as in the original's dummy_data.tsv."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        q = rng.choice(QUESTIONS)
        out.append((q, answer(q, rng)))
    return out


def generate(out_dir: str | Path, n_lines: int = 10000, n_test: int = 60, n_refs: int = 5,
             seed: int = SEED) -> dict:
    """Write train.tsv, test.contexts.tsv, test.refs.tsv and data.json under `out_dir`."""
    if n_lines < 1 or n_test < 1 or n_refs < 1:
        raise ValueError(f"n_lines, n_test and n_refs must be >= 1 (got {n_lines}, {n_test}, {n_refs})")
    out = Path(out_dir)
    with atomic_file(data_file(out, "train"), "w") as f:
        f.writelines(format_line([q, a], [0.0, 1.0]) + "\n" for q, a in pairs(n_lines, seed))
    rng = random.Random(seed + 1)
    tests = [QUESTIONS[i % len(QUESTIONS)] for i in range(n_test)]
    write_heldout(out, [(f"dummy:{i}", [q], [answer(q, rng) for _ in range(n_refs)]) for i, q in enumerate(tests)])
    stats = dict(source="dummy", train_lines=n_lines, test_examples=n_test, n_refs=n_refs, seed=seed)
    write_summary(out, stats)
    return stats


@command("python -m lsp_data.dummy")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out_dir", default="data/dummy")
    p.add_argument("--n_lines", type=int, default=10000)
    p.add_argument("--n_test", type=int, default=60)
    p.add_argument("--seed", type=int, default=SEED)
    a = p.parse_args(argv)
    print(json.dumps(generate(a.out_dir, a.n_lines, a.n_test, seed=a.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
