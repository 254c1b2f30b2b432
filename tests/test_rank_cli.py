"""rank.py: golden scores through the exact command line, JSONL and TSV input, the ensemble's
output shape, and one clear line for each bad input."""
import json
import subprocess
import sys

import pytest

from lsp_rank.cli import main

EOS = "<|endoftext|>"


@pytest.fixture(scope="module")
def gold(golden):
    return json.loads((golden / "dialogrpt" / "scores.json").read_text())


def write_inputs(tmp_path, cases):
    jl, tsv = tmp_path / "in.jsonl", tmp_path / "in.tsv"
    jl.write_text("".join(json.dumps({"context": c["cxt"].split(EOS), "hyps": c["hyps"]}) + "\n" for c in cases))
    tsv.write_text("".join("\t".join([c["cxt"].replace(EOS, " EOS ")] + c["hyps"]) + "\n" for c in cases))
    return jl, tsv


def close(a, b):
    return len(a) == len(b) and all(abs(x - y) < 1e-5 for x, y in zip(a, b))


def test_rank_py_command_line(dialogrpt_dir, gold, tmp_path, repo_dir):
    """The exact command a check outside the repo runs, single head, JSONL in."""
    jl, _ = write_inputs(tmp_path, gold["single"])
    out = tmp_path / "out.jsonl"
    r = subprocess.run([sys.executable, str(repo_dir / "rank.py"), "--ranker", str(dialogrpt_dir / "updown.pth"),
                        "--input", str(jl), "--output", str(out), "--max_cxt_turn", "2", "--batch_size", "5"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [list(x) for x in rows] == [["scores"]] * len(gold["single"])
    for row, c in zip(rows, gold["single_max_cxt_turn2"]):
        assert close(row["scores"], c["scores"])


def test_tsv_and_ensemble_shape(dialogrpt_dir, gold, tmp_path):
    _, tsv = write_inputs(tmp_path, gold["ensemble"])
    out = tmp_path / "out.jsonl"
    assert main(["--ranker", str(dialogrpt_dir / "ensemble.yml"), "--input", str(tsv), "--output", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    for row, c in zip(rows, gold["ensemble"]):
        assert list(row["scores"]) == ["human_vs_rand", "human_vs_machine", "updown", "depth", "width", "final"]
        for k, v in c["scores"].items():
            assert close(row["scores"][k], v), k


def test_dialogrpt_tsv_separator(dialogrpt_dir, gold, tmp_path):
    """DialogRPT's own TSVs join turns with <|endoftext|>: read the same."""
    c = gold["single"][0]
    tsv = tmp_path / "in.tsv"
    tsv.write_text("\t".join([c["cxt"]] + c["hyps"]) + "\n")
    assert main(["--ranker", str(dialogrpt_dir / "updown.pth"), "--input", str(tsv), "--output", str(tmp_path / "o")]) == 0
    assert close(json.loads((tmp_path / "o").read_text())["scores"], c["scores"])


@pytest.mark.parametrize("text, message", [
    ('{"context": ["hi"], "hyps": []}\n', r'in:1: "hyps" is empty'),
    ('{"context": ["hi"], "hyps": ["a"]}\n{"context": ["hi"]}\n', r"in:2: expected"),
    ('{"context": ["hi"], "hyps": ["a"]}\n\n{"context": ["hi"], "hyps": ["a"]}\n', r"in:2: blank line"),
    ('{"context": "hi", "hyps": ["a", 3]}\n', r'in:1: "hyps" must be a list of strings'),
    ('{"context": [], "hyps": ["a"]}\n', r'in:1: "context" is empty'),
    ('{"context": ["hi"], "hyps": ["a"]\n', r"in:1: not valid JSON"),
    ("hello EOS there\n", r"in:1: no candidate"),
])
def test_bad_input_one_line(dialogrpt_dir, tmp_path, capsys, text, message):
    import re
    (tmp_path / "in").write_text(text)
    code = main(["--ranker", str(dialogrpt_dir / "updown.pth"), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out")])
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error")]
    assert code == 2 and len(err) == 1 and re.search(message, err[0]), err
    assert not (tmp_path / "out").exists()


def test_bad_ranker_one_line(dialogrpt_dir, tmp_path, capsys):
    (tmp_path / "in").write_text('{"context": ["hi"], "hyps": ["a"]}\n')
    (tmp_path / "e.yml").write_text("cond:\n- name: x\n  wt: 1\n  path: missing.pth\n")
    code = main(["--ranker", str(tmp_path / "e.yml"), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "e.yml: cond[0] (x): missing.pth not found" in err[0]


def test_dstc_ranker_column(dialogrpt_dir, gold, tmp_path, capsys):
    """python -m dstc --ranker: each system's mean ranker score (golden per-hypothesis scores)."""
    from dstc.cli import main as dstc_main
    cases = [c for c in gold["single"] if len(c["hyps"]) >= 2]
    (tmp_path / "refs.tsv").write_text("".join(f"{c['cxt'].replace(EOS, ' EOS ')}\tsome reference\n" for c in cases))
    for j in (0, 1):
        (tmp_path / f"sys{j}.txt").write_text("".join(c["hyps"][j] + "\n" for c in cases))
    code = dstc_main(["--refs", str(tmp_path / "refs.tsv"), "--hyp", str(tmp_path / "sys0.txt"),
                      str(tmp_path / "sys1.txt"), "--no-meteor", "--ranker", str(dialogrpt_dir / "updown.pth"),
                      "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 0 and "Ranker" in out.splitlines()[0]
    got = json.loads((tmp_path / "r.json").read_text())
    for j in (0, 1):
        want = sum(c["scores"][j] for c in cases) / len(cases)
        assert abs(got[f"sys{j}.txt"]["ranker"] - want) < 1e-6
        assert f"{want:.4f}" in out
