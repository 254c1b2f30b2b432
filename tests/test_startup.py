"""Start-up: every command answers --help, and rejects a bad flag, without importing torch or
transformers (they cost seconds; argument parsing must not wait for them)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = re.compile(r"\|\s+(torch|transformers)$", re.M)  # a top-level import in -X importtime output

SCRIPTS = {  # command -> a bad command line (exit status 2, one-line error)
    "LSP_train.py": ["--fp16", "maybe"],
    "decode.py": ["--model", "m", "--input", "i", "--output", "o", "--top_k", "many"],
    "interact.py": ["--model", "m", "--preset", "nope"],
    "prepro.py": ["--no_such_flag"],
    "data_loader.py": ["--no_such_flag"],
    "demo.py": ["--steps", "x"],
    "-m dstc": ["--no_such_flag"],
    "-m lsp_model.convert": ["--no_such_flag"],
    "rank.py": ["--ranker", "r", "--input", "i", "--output", "o", "--batch_size", "x"],
    "rank.py train": ["--init", "i", "--pairs", "p", "--output_dir", "o", "--fp16", "maybe"],
    "-m dialogpt": ["no_such_subcommand"],  # the `dialogpt` command (each subcommand: test_dialogpt_command.py)
    "-m dialogpt decode": ["--model", "m", "--input", "i", "--output", "o", "--top_k", "many"],
    "-m dialogpt train": ["--fp16", "maybe"],
}


def _run(cmd: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-X", "importtime", *cmd.split(), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("cmd", SCRIPTS)
def test_help_and_bad_flag_import_neither_torch_nor_transformers(cmd):
    r = _run(cmd, "--help")
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr[-2000:]
    assert not HEAVY.findall(r.stderr), HEAVY.findall(r.stderr)
    r = _run(cmd, *SCRIPTS[cmd])
    errors = [ln for ln in r.stderr.splitlines() if not ln.startswith("import time:")]
    assert r.returncode == 2 and errors and "error:" in errors[-1] and "Traceback" not in r.stderr, errors
    assert not HEAVY.findall(r.stderr), HEAVY.findall(r.stderr)


def test_parsing_train_decode_chat_arguments_stays_light():
    """A full, valid command line is parsed (not just --help) and nothing heavy is loaded."""
    code = (
        "import sys\n"
        "from gpt2_training.args import parse_args as train_args\n"
        "import decode, interact\n"
        "a = train_args(['--model_name_or_path', 'm', '--train_input_file', 'd', '--output_dir', 'o', '--fp16', 'no'])\n"
        "assert a.fp16 is False\n"
        "d = decode.parse_args(['--model', 'm', '--input', 'i', '--output', 'o', '--preset', 'topk'])\n"
        "i = interact.parse_args(['--model', 'm'])\n"
        "assert decode.gen_config_from_args(d).top_k == 10 and interact.gen_config_from_args(i).top_p == 0.9\n"
        "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_train_help_shows_defaults_required_flags_and_booleans():
    r = _run("LSP_train.py", "--help")
    text = " ".join(r.stdout.split())
    assert "--output_dir OUTPUT_DIR" in text and "[--output_dir" not in text    # required in the usage line
    assert "parent of the run folder GPT2.{lr}.{batch}.{n}gpu.{timestamp} (required)" in text
    assert "--learning_rate LEARNING_RATE default: 1e-05" in text and "--lr_schedule {noam,noamwd,BERT,None} default: noam" in text
    assert "--fp16 {true,false}" in text


def test_data_loader_says_what_it_is():
    r = subprocess.run([sys.executable, "data_loader.py"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "not a command" in r.stdout and "BucketingDataLoader" in r.stdout


def test_one_boolean_vocabulary_everywhere():
    from gpt2_training.args import parse_args
    from lsp_io.flags import FALSE_WORDS, TRUE_WORDS, BadBoolean, parse_bool
    from lsp_model.generation_args import parse_setting
    from reddit_extractor.cli import boolean
    for word in TRUE_WORDS + tuple(w.upper() for w in TRUE_WORDS):
        assert parse_bool(word) is True and boolean(word) is True and parse_setting("x", word, False) is True
    for word in FALSE_WORDS:
        assert parse_bool(word) is False and boolean(word) is False and parse_setting("x", word, True) is False
    assert boolean("") is False  # the original reddit.py's type=bool
    with pytest.raises(BadBoolean, match="expected true or false .*got 'maybe'"):
        parse_bool("maybe")
    base = ["--model_name_or_path", "m", "--train_input_file", "d", "--output_dir", "o"]
    assert parse_args(base + ["--fp16", "Off", "--pbar", "1"]).fp16 is False


def test_lsp_train_cpu_threads_follow_free_cores(monkeypatch):
    """On CPU LSP_train uses the free cores (split among ranks); --threads and OMP_NUM_THREADS win."""
    import torch

    import LSP_train
    from lsp_io import cpu
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(cpu, "free_cores", lambda window=0.5: (3, 4, 1.0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    ns = SimpleNamespace
    LSP_train.set_cpu_threads(ns(device="cpu", threads=None))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    LSP_train.set_cpu_threads(ns(device="cpu", threads=None))
    LSP_train.set_cpu_threads(ns(device="cpu", threads=5))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    LSP_train.set_cpu_threads(ns(device="cpu", threads=None))
    assert calls == [3, 1, 5]


def test_huge_pages_asked_for_unless_the_user_says_otherwise(monkeypatch):
    """Every script that trains or decodes asks torch for transparent huge pages before importing
    it (page faults were a third of a CPU training step); an explicit setting wins."""
    from lsp_io import cpu
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    cpu.use_huge_pages()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    cpu.use_huge_pages()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"
    for script in ("gpt2_training/cli.py", "dialogpt/decode.py", "lsp_model/chat_cli.py", "lsp_serve/cli.py"):
        text = (REPO / script).read_text()
        main = text[text.index("def main("):]
        assert "use_huge_pages()" in main, script
        if "import torch" in main:
            assert main.index("use_huge_pages()") < main.index("import torch"), script
