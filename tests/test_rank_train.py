"""rank.py train: DialogRPT's pairwise loss through LSP_train's loop. On chitchat-dataset pairs
(pos = the real reply, neg = a random other reply) a tiny ranker learns within a CPU-minute, and
rank.py loads what it wrote; an interrupted run resumed to the end equals the uninterrupted one
bit for bit, in fp32 and bf16 autocast."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch
from transformers import GPT2ForSequenceClassification

from lsp_model.checkpoint import read_state_dict
from lsp_model.model import make_config
from lsp_rank.cli import main
from lsp_rank.model import save_ranker
from lsp_rank.train import PairLoader, pairwise_loss, read_pairs
from tiny_model import chitchat_turns


def make_pairs(convs, rng):
    replies = [t for c in convs for t in c[1:]]
    return [{"context": c[max(0, i - 2):i], "pos": c[i], "neg": rng.choice(replies)}
            for c in convs for i in range(1, min(len(c), 4))]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_ranker(path, n_layer=1, n_embd=32, n_head=2):
    torch.manual_seed(0)
    return save_ranker(GPT2ForSequenceClassification(make_config(n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                                                                 n_positions=64, num_labels=1,
                                                                 pad_token_id=50256)), path)


def run_dir(out):
    (d,) = Path(out).glob("GPT2.*")
    return d


def log_rows(out, name):
    """A run's log rows without the wall-clock column (train_log's epoch_time)."""
    lines = (run_dir(out) / name).read_text().splitlines()
    head = lines[0].split(",")
    cut = head.index("epoch_time") if "epoch_time" in head else None
    return [ln.split(",")[:cut] for ln in lines]


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
               "--learning_rate", "1e-3", "--optim", "adamw", "--valid_step", "20", "--pbar", "false"])
    assert rc == 0
    return tmp, held, log_rows(tmp / "out", "train_log.txt"), log_rows(tmp / "out", "eval_log.txt")


def test_heldout_accuracy_rises_well_above_chance(trained):
    _, held, train_log, eval_log = trained
    assert train_log[0] == "epoch,global_step,step,mean_loss,mean_acc,n_token_real,n_token_total".split(",")
    assert eval_log[0] == "epoch,global_step,step,eval_loss,eval_acc".split(",")
    accs = [float(r[4]) for r in eval_log[1:]]
    assert len(held) >= 100 and len(accs) == 3 and len(train_log) == 61
    assert max(accs) >= 0.65, accs
    assert float(train_log[-1][3]) < float(train_log[1][3])  # the epoch's running mean loss


def test_rank_py_loads_the_trained_ranker(trained):
    """rank.py on the held-out pairs ranks pos above neg exactly as often as training measured,
    and best.pth is the checkpoint of the best held-out accuracy."""
    tmp, held, _, eval_log = trained
    inp = write_jsonl(tmp / "rank_in.jsonl", [{"context": p["context"], "hyps": [p["pos"], p["neg"]]} for p in held])
    for name, acc_want in (("ranker.pth", float(eval_log[-1][4])), ("best.pth", max(float(r[4]) for r in eval_log[1:]))):
        assert main(["--ranker", str(tmp / "out" / name), "--input", str(inp), "--output", str(tmp / "o")]) == 0
        rows = [json.loads(x)["scores"] for x in (tmp / "o").read_text().splitlines()]
        acc = sum(s[0] > s[1] for s in rows) / len(rows)
        assert abs(acc - acc_want) < 1e-9, name


def test_pair_loader_resumes_inside_an_epoch(tmp_path):
    from lsp_model.tokenizer import load_tokenizer
    rows = [{"context": [f"hi {i}"], "pos": f"yes {i}", "neg": "no"} for i in range(10)]
    pairs = read_pairs(write_jsonl(tmp_path / "p.jsonl", rows), load_tokenizer(), 64)
    a = PairLoader(pairs, 3, seed=7)
    straight = [b for _ in range(3) for b in a]  # 3 epochs of 3 batches (a short 4th dropped)
    b = PairLoader(pairs, 3, seed=7)
    got = list(b)  # epoch 1
    got.append(next(iter(b)))  # and the first batch of epoch 2
    c = PairLoader(pairs, 3, seed=7)  # a fresh loader at b's position
    c.load_state_dict(b.state_dict())
    got += list(c) + list(c)
    assert len(straight) == len(got) == 9
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(straight, got))
    assert not torch.equal(straight[0][0], straight[3][0])  # each epoch is a new shuffle
    with pytest.raises(ValueError, match="n_pairs=10, now n_pairs=9"):
        PairLoader(pairs[:9], 3, seed=7).load_state_dict(b.state_dict())
    # two processes: disjoint halves of the same shuffle, as many batches each
    ranks = [list(PairLoader(pairs, 2, seed=7, rank=r, num_replica=2)) for r in range(2)]
    rows = [tuple(r.tolist()) for batches in ranks for ids, lens in batches for r in ids[:len(ids) // 2]]
    assert len(ranks[0]) == len(ranks[1]) == 2 and len(set(rows)) == len(rows) == 8


RESUME_FLAGS = ["--num_optim_steps", "6", "--valid_step", "2", "--train_batch_size", "8",
                "--gradient_accumulation_steps", "2", "--learning_rate", "1e-3", "--lr_schedule", "BERT",
                "--warmup_steps", "2", "--pbar", "false"]


@pytest.fixture(scope="module")
def resume_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rank_resume")
    rng = random.Random(1)
    convs = chitchat_turns(60)
    pairs = make_pairs(convs, rng)
    return (tmp, tiny_ranker(tmp / "init"), write_jsonl(tmp / "train.jsonl", pairs[:-24]),
            write_jsonl(tmp / "held.jsonl", pairs[-24:]))


PRECISIONS = {"fp32": ["--optim", "lsp"], "bf16": ["--bf16", "true", "--optim", "adamw"]}


def command(resume_data, precision):
    tmp, init, train, held = resume_data
    return ["train", "--init", str(init), "--pairs", str(train), "--eval_pairs", str(held), *RESUME_FLAGS,
            *PRECISIONS[precision]]


def straight_run(resume_data, precision):
    """OUT of the uninterrupted run (made once per module)."""
    a = resume_data[0] / f"straight-{precision}"
    if not (a / "ranker.pth").is_file():
        assert main([*command(resume_data, precision), "--output_dir", str(a)]) == 0
    return a


def assert_same_run(a, b):
    for name in ("ranker.pth", "best.pth"):
        x, y = read_state_dict(a / name), read_state_dict(b / name)
        assert x.keys() == y.keys() and "score.weight" in x
        assert all(torch.equal(x[k], y[k]) for k in x), name
    assert log_rows(a, "train_log.txt") == log_rows(b, "train_log.txt")  # every update's loss, bit for bit
    assert len(log_rows(b, "train_log.txt")) == 7
    assert log_rows(a, "eval_log.txt") == log_rows(b, "eval_log.txt")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_interrupted_run_resumed_equals_straight_run(resume_data, precision):
    common, tag = command(resume_data, precision), precision == "bf16"
    a, b = straight_run(resume_data, precision), resume_data[0] / f"stopped-{precision}"
    # stop after update 3 (past the checkpoint of update 2), then resume from that checkpoint
    assert main([*common, "--output_dir", str(b), "--stop_after_steps", "3"]) == 0
    assert not (b / "ranker.pth").exists() and (run_dir(b) / "GP2-pretrain-step-2.resume.pt").is_file()
    # resume from the newest checkpoint (fp32), or from that checkpoint's .pkl named (bf16)
    spec = str(run_dir(b) / "GP2-pretrain-step-2.pkl") if tag else "last"
    assert main([*common, "--output_dir", str(b), "--resume_from_checkpoint", spec]) == 0
    assert_same_run(a, b)
    assert not (run_dir(b) / "train.lock").exists() and (run_dir(b) / "run_config.json").is_file()
    cfg = json.loads((run_dir(b) / "run_config.json").read_text())
    assert cfg["micro_batch"] == 4 and cfg["bf16"] == tag


def test_ctrl_c_saves_nothing_half_done_and_resumes_exactly(resume_data, monkeypatch, capsys):
    """SIGINT as micro-batch 6 is taken (updates 1-2 and the step-2 checkpoint done): exit status
    130 and LSP_train's one line; the resumed run equals the straight one."""
    import os
    import signal

    from lsp_rank import train as rank_train
    batches = rank_train.PairLoader.__iter__

    def interrupted(self):
        for b in batches(self):
            if self._epoch == 0 and self._offset == 6:
                os.kill(os.getpid(), signal.SIGINT)
            yield b
    b = resume_data[0] / "ctrl-c"
    monkeypatch.setattr(rank_train.PairLoader, "__iter__", interrupted)
    capsys.readouterr()
    assert main([*command(resume_data, "fp32"), "--output_dir", str(b)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("update 2: eval_loss ")  # the step-2 checkpoint's evaluation
    assert err[1] == (f"error: interrupted at update 2; the last checkpoint is step 2 in {run_dir(b)}; resume with "
                      f"--resume_from_checkpoint last")
    assert not (b / "ranker.pth").exists() and not (run_dir(b) / "train.lock").exists()
    monkeypatch.undo()
    assert main([*command(resume_data, "fp32"), "--output_dir", str(b), "--resume_from_checkpoint", "last"]) == 0
    assert_same_run(straight_run(resume_data, "fp32"), b)


def test_bad_resume_input_is_one_line(resume_data, tmp_path, capsys):
    tmp, init, train, held = resume_data
    common = ["train", "--init", str(init), "--pairs", str(train), *RESUME_FLAGS, "--output_dir", str(tmp_path / "o")]
    cases = [
        (str(tmp_path / "nothere"), "nothere: not found"),
        (str(tmp_path), "no complete checkpoint (.pkl + .resume.pt)"),
        ("last", "no output folder"),
        (str(init / "model.safetensors"), "not a GP2-pretrain-step-N.pkl/.resume.pt/-lora or a run folder"),
    ]
    for spec, want in cases:
        capsys.readouterr()
        assert main([*common, "--resume_from_checkpoint", spec]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and want in err[0], (spec, err)
    for flag in ("--pairs", "--eval_pairs"):  # a missing pairs file names its flag
        capsys.readouterr()
        argv = [*common, flag, str(tmp_path / "none.jsonl")]
        assert main(argv) == 2
        assert capsys.readouterr().err.strip() == f"error: {flag} {tmp_path / 'none.jsonl'}: No such file or directory"
    # a run folder of another model: the checkpoint does not fit --init
    other = main(["train", "--init", str(tiny_ranker(tmp_path / "wide", n_embd=64, n_head=4)), "--pairs", str(train),
                  *RESUME_FLAGS, "--output_dir", str(tmp_path / "w"), "--stop_after_steps", "2"])
    assert other == 0
    capsys.readouterr()
    assert main([*common, "--resume_from_checkpoint", str(run_dir(tmp_path / "w"))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit" in err[0] and "n_embd 64 vs 32" in err[0], err


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


@pytest.mark.distributed
def test_two_processes_take_disjoint_shares(resume_data, tmp_path):
    """torchrun, 2 CPU processes (gloo): the run's first log row counts the real tokens of both
    processes' first micro-batches as PairLoader splits them; one process writes the ranker."""
    import subprocess
    import sys

    from lsp_model.tokenizer import load_tokenizer
    from lsp_rank.model import load_head
    _, init, train, _ = resume_data
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "rank.py",
           "train", "--init", str(init), "--pairs", str(train), "--output_dir", str(out), "--num_optim_steps", "2",
           "--valid_step", "2", "--train_batch_size", "4", "--pbar", "false", "--device", "cpu"]
    r = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count(f"wrote {out / 'ranker.pth'}") == 1, r.stderr[-3000:]
    pairs = read_pairs(train, load_tokenizer(), 64)
    first = [next(iter(PairLoader(pairs, 4, seed=42, rank=k, num_replica=2))) for k in range(2)]
    rows = log_rows(out, "train_log.txt")
    assert int(rows[1][5]) == sum(int(lens.sum()) for _, lens in first) and len(rows) == 3
    assert json.loads((run_dir(out) / "run_config.json").read_text())["world_size"] == 2
    assert load_head(out / "ranker.pth").config.n_embd == 32


def test_last_update_is_a_checkpoint_and_resuming_a_finished_run_changes_nothing(resume_data, tmp_path):
    """5 updates with --valid_step 2: checkpoints 2, 4 and (the end) 5, each evaluated; resuming
    the finished run writes the same ranker and no second row."""
    cmd = [*command(resume_data, "fp32"), "--output_dir", str(tmp_path), "--num_optim_steps", "5"]
    assert main(cmd) == 0
    evals, ranker = log_rows(tmp_path, "eval_log.txt"), read_state_dict(tmp_path / "ranker.pth")
    assert [r[1] for r in evals[1:]] == ["3", "5", "6"]  # the log's global_step column: update + 1
    assert main([*cmd, "--resume_from_checkpoint", "last"]) == 0
    assert log_rows(tmp_path, "eval_log.txt") == evals
    again = read_state_dict(tmp_path / "ranker.pth")
    assert all(torch.equal(ranker[k], again[k]) for k in ranker)
