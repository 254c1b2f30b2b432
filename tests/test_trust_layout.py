"""One owner per on-disk name: the run folder's (lsp_model.runfolder), the data folder's
(lsp_data.datafolder), the turn separator (lsp_data.tsv.TURN_SEP); everyone else calls them.
The structure checks read the code's string constants (docstrings and comments do not count)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_model import runfolder as rf

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dialogpt", "lsp_io", "lsp_model", "lsp_data", "lsp_serve", "gpt2_training", "pipeline", "dstc", "reddit_extractor")
SCRIPTS = ("LSP_train.py", "decode.py", "interact.py", "serve.py", "prepare_data.py", "prepro.py", "demo.py")


def code_strings(path: Path) -> list[str]:
    """Every string constant of a module except docstrings (f-string parts included)."""
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def sources():
    for pkg in PACKAGES:
        yield from sorted((REPO / pkg).rglob("*.py"))
    yield from (REPO / s for s in SCRIPTS)


@pytest.mark.parametrize("literal,owner", [
    ("GP2-pretrain-step", "lsp_model/runfolder.py"), ("train_log.txt", "lsp_model/runfolder.py"),
    ("eval_log.txt", "lsp_model/runfolder.py"), ("train.lock", "lsp_model/runfolder.py"),
    (" EOS ", "lsp_io/turns.py"), ("test.refs.tsv", "lsp_data/datafolder.py"),
    ("test.contexts.tsv", "lsp_data/datafolder.py"), ("data.json", "lsp_data/datafolder.py")])
def test_each_name_is_spelled_in_one_module(literal, owner):
    """A constant that builds or parses the name (prose in messages and help, with spaces, may say it)."""
    def builds(s):
        return s == literal if " " in literal else literal in s and " " not in s
    spelled = sorted(str(p.relative_to(REPO)) for p in sources() if any(builds(s) for s in code_strings(p)))
    assert spelled == [owner]


def test_dead_constants_are_gone_and_the_history_budget_has_one_default():
    text = {str(p.relative_to(REPO)): p.read_text() for p in sources()}
    for name in ("FEATURE_KEYS", "SUB_FIELDS", "COMM_FIELDS", "_WORD_CHARS", "LEGACY_BASE"):
        assert not [f for f, t in text.items() if name in t], name
    assert [f for f, t in text.items() if "SCHEDULES" in t] == ["gpt2_training/args.py", "gpt2_training/schedule.py"]
    assert [f for f, t in text.items() if "HISTORY_BUDGET = " in t] == ["lsp_model/defaults.py"]
    assert not [f for f, t in text.items() for line in t.splitlines() if "history_budget" in line and "256" in line]


def test_run_folder_names_and_finders(tmp_path):
    run = tmp_path / rf.run_dir_name(1e-5, 16, 1, "2026-12-06000000")
    run.mkdir()
    assert rf.run_dirs(tmp_path) == [run] and run.name == "GPT2.1e-05.16.1gpu.2026-12-06000000"
    for step in (2, 10):
        rf.weights_path(run, step).write_bytes(b"w")
    rf.resume_path(run, 2).write_bytes(b"r")
    rf.resume_path(run, 7).write_bytes(b"r")  # its .pkl is missing: not complete
    (run / ".GP2-pretrain-step-12.pkl.tmp-x").write_bytes(b"half")  # a killed save
    assert rf.weight_steps(run) == [10, 2] and rf.latest_weights(run) == run / "GP2-pretrain-step-10.pkl"
    assert rf.complete_steps(run) == [2]
    assert rf.step_of(run / "GP2-pretrain-step-7.resume.pt") == 7 and rf.step_of(run / "x.pkl") is None
    assert rf.hf_path(run, 3).name == "GP2-pretrain-step-3-hf"
    assert rf.complete_steps(tmp_path / "none") == [] and rf.run_dirs(tmp_path / "none") == []


def test_the_demo_finds_run_files_without_torch():
    code = ("import sys\nfrom pathlib import Path\nfrom pipeline import stages, report\n"
            "assert stages.resumable_step(Path('.')) is None\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_the_demo_accepts_every_dump_the_extractor_reads(tmp_path):
    """The demo asks reddit_extractor's own finder: a .jsonl dump counts (it had its own list)."""
    from pipeline import reddit_source
    folder = tmp_path / "dumps"
    folder.mkdir()
    assert "RS_2005-12.zst" in reddit_source.missing_dumps("small", folder)
    (folder / "RS_2005-12.jsonl").write_text("{}\n")
    (folder / "RC_2005-12.json").write_text("{}\n")
    missing = reddit_source.missing_dumps("small", folder)
    assert "RS_2005-12.zst" not in missing and "RC_2005-12.zst" not in missing and len(missing) == 96
