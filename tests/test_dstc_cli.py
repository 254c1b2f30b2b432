"""Command lines: python -m dstc, dstc/dstc.py (original flags), batch_eval.py, extract_human.py."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dstc import evaluate
from dstc.cli import batch_eval_main, dstc_main, extract_human_main, filter_resp_lines, main
from dstc.files import read_lines, read_refs_tsv

KEYS = ["k00000", "k00001", "k00002"]


def test_python_m_dstc_json_has_expected_keys(golden, tmp_path, repo_dir):
    case = golden / "eval" / "edge_pipe_in_ref"
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "dstc", "--refs", str(case / "refs.tsv"), "--hyp",
                           str(case / "hyp.txt"), "--no-meteor", "--json", str(out), "--markdown"],
                          cwd=repo_dir, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| NIST-2 |" in proc.stdout and "profile:dialogpt" in proc.stdout
    got = json.loads(out.read_text())
    assert {"n_lines", "nist", "bleu", "meteor", "entropy", "distinct", "avg_len"} <= set(got)
    assert got["meteor"] is None and got["meteor_status"] == "skipped"


def test_cli_line_count_mismatch(golden, tmp_path, capsys):
    hyp = tmp_path / "h.txt"
    hyp.write_text("only one line\n")
    assert main(["--refs", str(golden / "eval" / "edge_pipe_in_ref" / "refs.tsv"), "--hyp", str(hyp),
                 "--no-meteor"]) == 2
    err = capsys.readouterr().err
    assert "1 lines" in err and "3 examples" in err


@pytest.fixture()
def dstc_files(golden, tmp_path):
    """The edge_last_hyp_empty case in the original's formats: test.refs + keys + plain hyps."""
    case = golden / "eval" / "edge_last_hyp_empty"
    refs = read_refs_tsv(case / "refs.tsv")[1]
    (tmp_path / "test.refs").write_text(
        "".join(k + "".join(f"\t1|{r}" for r in rs) + "\n" for k, rs in zip(KEYS, refs)))
    (tmp_path / "keys.txt").write_text("".join(k + "\r\n" for k in reversed(KEYS)))  # unsorted, CRLF
    hyps = read_lines(case / "hyp.txt")
    (tmp_path / "sys.txt").write_text("".join(h + "\n" for h in hyps))
    return tmp_path, hyps, refs


def test_dstc_py_original_flags(dstc_files, capsys):
    d, hyps, refs = dstc_files
    rc = dstc_main([str(d / "sys.txt"), "--refs", str(d / "test.refs"), "--keys", str(d / "keys.txt"),
                    "--clean", "--no-meteor", "--json", str(d / "o.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "n_lines = 3" in out and "NIST = [" in out and "diversity = [" in out
    got = json.loads((d / "o.json").read_text())
    assert got["nist"] == evaluate(hyps, refs, "dialogpt", meteor=False)["nist"]


def test_dstc_py_seven_column_submission(dstc_files):
    d, hyps, refs = dstc_files
    (d / "sub.txt").write_text("".join(f"{k}\tr\tc\t1\t1\tctx\t{h}\n" for k, h in zip(KEYS, hyps)))
    assert dstc_main([str(d / "sub.txt"), "--refs", str(d / "test.refs"), "--keys", str(d / "keys.txt"),
                      "-c", "--profile", "dstc7", "--no-meteor", "--json", str(d / "o.json")]) == 0
    got = json.loads((d / "o.json").read_text())
    assert got["n_lines"] == 3 and got["bleu"] == evaluate(hyps, refs, "dstc7", meteor=False)["bleu"]


def test_batch_eval_keeps_blank_lines(dstc_files, capsys):
    d, hyps, refs = dstc_files
    (d / "sys.txt").rename(d / "model.resp.txt")
    assert batch_eval_main(["--input_dir", str(d), "--refs", str(d / "test.refs"), "--keys",
                            str(d / "keys.txt"), "--no-meteor"]) == 0
    assert read_lines(d / "resp" / "model.resp.txt") == hyps  # the empty last line is kept
    got = json.loads((d / "eval" / "model.resp.txt.eval.json").read_text())
    assert got["n_lines"] == 3
    assert "model.resp.txt" in capsys.readouterr().out


def test_filter_resp_lines_rule():
    assert filter_resp_lines(["Valid point", "", "x"], 3) == ["Valid point", "", "x"]
    assert filter_resp_lines(["Val loss 3.2", "a", "", "b"], 3) == ["a", "", "b"]


def test_extract_human(dstc_files):
    d, _, refs = dstc_files
    out = d / "human.resp.txt"
    (d / "sorted.keys").write_text("".join(k + "\n" for k in KEYS))
    assert extract_human_main(["--refs", str(d / "test.refs"), "--keys", str(d / "sorted.keys"),
                               "--out", str(out)]) == 0
    assert read_lines(out) == [rs[1] for rs in refs]


def test_scripts_run_as_files(repo_dir):
    for script in ("dstc.py", "batch_eval.py", "extract_human.py"):
        proc = subprocess.run([sys.executable, str(repo_dir / "dstc" / script), "--help"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "usage" in proc.stdout, proc.stderr


def test_non_utf8_hypothesis_names_file_and_line(tmp_path, capsys):
    refs = tmp_path / "refs.tsv"
    refs.write_text("ctx a\tref a\nctx b\tref b\nctx c\tref c\n")
    hyp = tmp_path / "hyp.txt"
    hyp.write_bytes(b"fine\nalso fine\ncaf\xe9 latin-1\n")
    assert main(["--refs", str(refs), "--hyp", str(hyp), "--no-meteor"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {hyp}:3: not UTF-8 (byte 0xe9") and err.count("\n") == 1
    assert main(["--refs", str(tmp_path / "missing.tsv"), "--hyp", str(hyp), "--no-meteor"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing.tsv'}: cannot read")
