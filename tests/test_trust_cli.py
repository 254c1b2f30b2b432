"""Every command line ends a user's mistake with one line and a documented exit status
(lsp_io.cli): missing model, unwritable output, closed pipe, binary stdin, Ctrl-C, a port in use;
the cheap checks answer before torch is imported."""
from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_io import cli

REPO = Path(__file__).resolve().parents[1]
HEAVY = re.compile(r"\|\s+(torch|transformers)$", re.M)  # a top-level import in -X importtime output
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _run(*args, stdout=subprocess.PIPE, stdin=None):
    r = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=REPO, env=ENV, stdout=stdout,
                       stderr=subprocess.PIPE, stdin=stdin, text=True, timeout=120)
    errors = [ln for ln in r.stderr.splitlines() if not ln.startswith("import time:")]
    return r, errors


@pytest.mark.parametrize("script", ["decode.py", "interact.py", "serve.py"])
def test_missing_model_is_one_line_naming_the_script_before_torch(script, tmp_path):
    args = ["--model", "models/nope"]
    if script == "decode.py":
        (tmp_path / "in.txt").write_text("hi\n")
        args += ["--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "hyp.txt")]
    r, errors = _run(script, *args)
    assert r.returncode == 2 and errors == [f"{script}: error: checkpoint not found: models/nope (--model)"], errors
    assert not HEAVY.findall(r.stderr)


def test_unwritable_output_and_missing_input_are_refused_before_the_model_loads(tmp_path):
    (tmp_path / "in.txt").write_text("hi\n")
    r, errors = _run("decode.py", "--model", str(tmp_path), "--input", str(tmp_path / "in.txt"),
                     "--output", "/proc/nope/x.txt")
    assert r.returncode == 2 and len(errors) == 1 and "/proc/nope/x.txt: cannot write" in errors[0], errors
    r, errors = _run("decode.py", "--model", str(tmp_path), "--input", str(tmp_path / "none.txt"),
                     "--output", str(tmp_path / "hyp.txt"))
    assert r.returncode == 2 and errors == [f"decode.py: error: {tmp_path / 'none.txt'}: no such file"], errors
    assert not HEAVY.findall(r.stderr)


def test_serve_port_in_use_is_one_line_before_the_model_loads(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r, errors = _run("serve.py", "--model", str(tmp_path), "--port", str(port))
    assert r.returncode == 2 and errors == [f"serve.py: error: cannot listen on 127.0.0.1:{port}: "
                                            "Address already in use"], errors
    assert not HEAVY.findall(r.stderr)


def _closed_pipe():
    """A pipe whose reader is already gone: every write to it fails with EPIPE (`| head -0`)."""
    r, w = os.pipe()
    os.close(r)
    return w


@pytest.mark.parametrize("cmd", [["prepro.py", "--dump", "DB"], ["-m", "dstc", "--refs", "REFS", "--hyp", "HYP"],
                                 ["data_loader.py"]])
def test_a_closed_stdout_ends_quietly_with_141(cmd, tmp_path):
    """`... | head -1`: no BrokenPipeError traceback, the shell's SIGPIPE status."""
    (tmp_path / "refs.tsv").write_text("hi\tthere you are\n" * 3)
    (tmp_path / "hyp.txt").write_text("there you are\n" * 3)
    if "DB" in cmd:
        from lsp_data.prepro import build_db
        (tmp_path / "train.tsv").write_text("0.0 hello there EOS 1.0 how are you\t1.0 fine thanks\n" * 50)
        build_db(str(tmp_path / "train.tsv"), str(tmp_path / "db"), 64, workers=1, progress=False)
    subs = {"DB": str(tmp_path / "db"), "REFS": str(tmp_path / "refs.tsv"), "HYP": str(tmp_path / "hyp.txt")}
    w = _closed_pipe()
    try:
        r = subprocess.run([sys.executable, *[subs.get(a, a) for a in cmd]] + (["--no-meteor"] if "dstc" in cmd else []),
                           cwd=REPO, env=ENV, stdout=w, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert r.returncode == cli.BROKEN_PIPE and r.stderr == "", r.stderr


def test_binary_stdin_to_interact_is_one_line(tiny_dialogue_models, capsys, monkeypatch):
    import interact
    blob = bytes(range(256)) * 4
    # the interpreter's own stdin under a C locale: surrogateescape lets any byte through as text
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(blob), encoding="utf-8", errors="surrogateescape"))
    code = interact.main(["--model", str(tiny_dialogue_models["forward"]), "--preset", "greedy"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("interact.py: error: input is not UTF-8 text"), err


def test_the_wrapper_maps_each_case_to_its_status(capsys):
    def raising(e):
        def main(argv=None):
            raise e
        return main
    assert cli.run(raising(KeyboardInterrupt()), "x.py") == cli.INTERRUPTED
    assert capsys.readouterr().err.strip() == "x.py: interrupted"
    assert cli.run(raising(FileNotFoundError(2, "No such file or directory", "a/b")), "x.py") == cli.BAD_INPUT
    assert capsys.readouterr().err == "x.py: error: a/b: No such file or directory\n"
    assert cli.run(raising(cli.UsageError("bad\nsecond line")), "x.py") == cli.BAD_INPUT
    assert capsys.readouterr().err == "x.py: error: bad\n"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        cli.run(raising(ZeroDivisionError()), "x.py")
    assert cli.run(lambda argv: None, "x.py") == cli.OK and cli.run(lambda argv: 3, "x.py") == 3


def test_every_entry_point_goes_through_the_wrapper():
    """Each script and `python -m` module's main is decorated with lsp_io.cli.command."""
    mains = {"dialogpt/decode.py": "main", "lsp_model/chat_cli.py": "main", "lsp_serve/cli.py": "main",
             "lsp_data/prepare_cli.py": "main", "gpt2_training/cli.py": "main", "pipeline/cli.py": "main",
             "lsp_data/prepro.py": "main", "dstc/cli.py": "main",
             "reddit_extractor/cli.py": "main", "lsp_model/convert.py": "main", "lsp_model/smoke.py": "main",
             "lsp_data/dummy.py": "main", "lsp_data/chitchat.py": "main", "data_loader.py": "main"}
    for path, name in mains.items():
        text = (REPO / path).read_text()
        assert re.search(rf'@command\("[^"]+"\)\n\s*def {name}\(', text), path
