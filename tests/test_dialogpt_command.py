"""The installed `dialogpt` command: a wheel of the project, installed (not editable) into a fresh
venv, answers `dialogpt --help` and every subcommand's --help from outside the checkout, and the
wheel holds only the project's packages (no top-level `decode`, `serve`, `demo`, ... modules that
could shadow or be shadowed by another distribution's)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from dialogpt.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"dialogpt", "lsp_io", "lsp_model", "lsp_data", "gpt2_training", "reddit_extractor", "dstc",
            "pipeline", "lsp_serve", "lsp_rank"}
SUBCOMMANDS = ["prepare", "prepro", "train", "decode", "chat", "serve", "rank", "eval", "convert", "demo"]


def _run(cmd: list, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_dispatcher_lists_every_subcommand_and_refuses_an_unknown_one(capsys):
    assert list(COMMANDS) == SUBCOMMANDS
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dialogpt SUBCOMMAND") and all(f"\n  {c} " in out for c in SUBCOMMANDS)
    assert main(["nope"]) == 2
    assert capsys.readouterr().err == f"dialogpt: error: unknown subcommand 'nope' (one of: {', '.join(SUBCOMMANDS)})\n"


def test_a_subcommand_is_its_script_and_errors_name_the_command_typed(tmp_path, capsys):
    """The same main and exit status; the message says `dialogpt decode`, and the name is restored
    after, so the script run in the same process still says decode.py."""
    from dialogpt import decode as decode_cli
    argv = ["--model", str(tmp_path / "none"), "--input", "i", "--output", "o"]
    assert main(["decode", *argv]) == 2
    assert capsys.readouterr().err.startswith("dialogpt decode: error: ")
    assert decode_cli.main(argv) == 2
    assert capsys.readouterr().err.startswith("decode.py: error: ")
    with pytest.raises(SystemExit) as e:  # argparse's own errors too
        main(["train", "--fp16", "maybe"])
    assert e.value.code == 2 and "dialogpt train: error: argument --fp16" in capsys.readouterr().err
    assert sys.argv[0] != "dialogpt train"


@pytest.mark.slow
def test_wheel_installs_the_command_and_only_the_project_packages(tmp_path):
    # built from a copy of the sources: an in-tree build would leave build/ and *.egg-info in the checkout
    src, wheels = tmp_path / "src", tmp_path / "wheels"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                             "tests", "data", "models", "runs", "demo_output", ".venv"))
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
              "-w", wheels, src], cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = wheels.glob("dialogpt-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        declared = set(z.read(top_level).decode().split())
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == PACKAGES and declared == PACKAGES, (tops ^ PACKAGES, declared ^ PACKAGES)
    assert "dialogpt/cli.py" in names and "dialogpt/decode.py" in names

    env_dir = tmp_path / "venv"  # the system's torch & co. are reused; the project comes from the wheel alone
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py, exe = env_dir / "bin" / "python", env_dir / "bin" / "dialogpt"
    r = _run([py, "-m", "pip", "install", "--no-deps", "--ignore-installed", "--no-cache-dir", wheel], cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = _run([py, "-c", "import dialogpt, lsp_model, gpt2_training; print(dialogpt.__file__, lsp_model.__file__, "
              "gpt2_training.__file__)"], cwd=tmp_path)
    assert r.returncode == 0 and all(f.startswith(str(env_dir)) for f in r.stdout.split()), r.stdout + r.stderr

    r = _run([exe, "--help"], cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: dialogpt SUBCOMMAND"), r.stderr
    for name in SUBCOMMANDS:
        r = _run([exe, name, "--help"], cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.startswith(f"usage: dialogpt {name} "), (name, r.stderr[-2000:])
    r = _run([exe, "decode", "--model", "m", "--input", "i", "--output", "o", "--top_k", "many"], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.splitlines()[-1].startswith("dialogpt decode: error: "), r.stderr
