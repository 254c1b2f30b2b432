"""rank.py train: DialogRPT's pairwise loss with LSP_train's optimizer/schedule machinery. On
chitchat-dataset pairs (pos = the real reply, neg = a random other reply) a tiny ranker learns
within a CPU-minute, and rank.py loads what it wrote."""
from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import GPT2ForSequenceClassification

from lsp_model.model import make_config
from lsp_rank.cli import main
from lsp_rank.model import save_ranker
from lsp_rank.train import pairwise_loss
from tiny_model import chitchat_turns


def make_pairs(convs, rng):
    replies = [t for c in convs for t in c[1:]]
    return [{"context": c[max(0, i - 2):i], "pos": c[i], "neg": rng.choice(replies)}
            for c in convs for i in range(1, min(len(c), 4))]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pairwise_loss_is_dialogrpts():
    lp, ln = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 3.0])
    p = torch.exp(lp) / (torch.exp(lp) + torch.exp(ln))
    assert torch.allclose(pairwise_loss(lp, ln), -torch.log(p).mean())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rank_train")
    rng = random.Random(0)
    convs = chitchat_turns(600)
    train = write_jsonl(tmp / "train.jsonl", make_pairs(convs[:500], rng))
    held = make_pairs(convs[500:], rng)
    write_jsonl(tmp / "held.jsonl", held)
    torch.manual_seed(0)
    init = save_ranker(GPT2ForSequenceClassification(make_config(n_layer=2, n_embd=64, n_head=4, n_positions=128,
                                                                 num_labels=1, pad_token_id=50256)), tmp / "init")
    rc = main(["train", "--init", str(init), "--pairs", str(train), "--eval_pairs", str(tmp / "held.jsonl"),
               "--output_dir", str(tmp / "out"), "--num_optim_steps", "60", "--train_batch_size", "16",
               "--learning_rate", "1e-3", "--optim", "adamw", "--valid_step", "20"])
    assert rc == 0
    log = [json.loads(x) for x in (tmp / "out" / "train_log.jsonl").read_text().splitlines()]
    return tmp, held, log


def test_heldout_accuracy_rises_well_above_chance(trained):
    _, held, log = trained
    accs = [r["eval_acc"] for r in log if "eval_acc" in r]
    assert len(held) >= 100 and len(accs) == 3
    assert max(accs) >= 0.65, accs
    assert log[-1]["loss"] < log[0]["loss"]


def test_rank_py_loads_the_trained_ranker(trained):
    """rank.py on the held-out pairs ranks pos above neg exactly as often as training measured."""
    tmp, held, log = trained
    inp = write_jsonl(tmp / "rank_in.jsonl", [{"context": p["context"], "hyps": [p["pos"], p["neg"]]} for p in held])
    assert main(["--ranker", str(tmp / "out" / "ranker.pth"), "--input", str(inp), "--output", str(tmp / "o")]) == 0
    rows = [json.loads(x)["scores"] for x in (tmp / "o").read_text().splitlines()]
    acc = sum(s[0] > s[1] for s in rows) / len(rows)
    assert abs(acc - log[-1]["eval_acc"]) < 1e-9


def test_bad_pair_line(tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"context": ["hi"], "pos": "a", "neg": "b"}\n{"context": ["hi"], "pos": "a"}\n')
    rc = main(["train", "--init", str(tmp_path / "nothere"), "--pairs", str(bad), "--output_dir", str(tmp_path / "o")])
    assert rc == 2
    torch.manual_seed(0)
    init = save_ranker(GPT2ForSequenceClassification(make_config(n_layer=1, n_embd=32, n_head=2, n_positions=64,
                                                                 num_labels=1, pad_token_id=50256)), tmp_path / "i")
    capsys.readouterr()
    rc = main(["train", "--init", str(init), "--pairs", str(bad), "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and "p.jsonl:2: expected" in err[-1]
