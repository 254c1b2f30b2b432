"""prepare_data.py strict about its input and bounded in memory: a huge record is skipped unread
and counted, an unclosed quote / NUL / bad byte is reported by its physical line, a BOM is
accepted, every --input (and glob) is read, an earlier import is not replaced unasked. Big inputs
are made on the fly (tmp_path is removed by pytest)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import prepare_data
from lsp_io import cli

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
BIG = 30 << 20  # the benchmark (benchmarks/bench_prepare_data.py) measures 100 MB


def summary(out: Path) -> dict:
    return json.loads((out / "data.json").read_text())


def run_measured(args: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    """prepare_data.py in a child that reports its own peak RSS (KiB) on its last stderr line."""
    code = ("import runpy, sys\nfrom lsp_io.cpu import peak_rss_kib\nsys.argv = ['prepare_data.py'] + sys.argv[1:]\n"
            "try:\n    runpy.run_path('prepare_data.py', run_name='__main__')\n"
            "finally:\n    print(peak_rss_kib(), file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                       timeout=300)
    return r, int(r.stderr.strip().splitlines()[-1])


def conversations(n: int, tag: str = "c") -> list[str]:
    return [json.dumps([f"hello {tag} {i} how are you", f"fine {i} thanks and you", f"good {i} bye now"])
            for i in range(n)]


def test_a_huge_jsonl_line_is_skipped_unread_and_counted(tmp_path):
    src = tmp_path / "big.jsonl"
    with open(src, "w") as f:
        f.write("\n".join(conversations(20)) + "\n")
        f.write('["' + "x" * BIG + '", "y"]\n')  # line 21
        f.write("\n".join(conversations(20, "d")) + "\n")
    r, rss_kib = run_measured(["--input", str(src), "--out", str(tmp_path / "o"), "--test_frac", "0"])
    assert r.returncode == 0, r.stderr
    s = summary(tmp_path / "o")
    assert s["conversations"] == 40 and s["malformed"]["too_long"]["count"] == 1
    assert s["malformed"]["too_long"]["first"][0].startswith(f"{src}:21: line over --max_record_bytes")
    assert rss_kib < 400 * 1024, rss_kib  # the line is 30 MB; far less than it is ever held


def test_a_huge_csv_field_is_skipped_unread_and_counted(tmp_path):
    src = tmp_path / "big.csv"
    with open(src, "w") as f:
        f.write("conversation_id,speaker,text\n1,a,hi there\n1,b,hello you\n")
        f.write('2,a,"' + ("word " * (BIG // 5)) + '\nstill the field"\n')  # lines 4-5
        f.write("3,a,how are you\n3,b,fine thanks\n")
    r, rss_kib = run_measured(["--input", str(src), "--out", str(tmp_path / "o"), "--test_frac", "0",
                               "--max_record_bytes", str(1 << 20)])
    assert r.returncode == 0, r.stderr
    s = summary(tmp_path / "o")
    assert s["conversations"] == 2 and s["lines"]["train"] == 2
    assert s["malformed"]["too_long"]["first"][0].startswith(f"{src}:4: record of lines 4-5 over --max_record_bytes")
    assert rss_kib < 400 * 1024, rss_kib


def test_unclosed_quote_nul_bom_and_bad_byte_by_physical_line(tmp_path):
    src = tmp_path / "t.csv"
    src.write_bytes(b"\xef\xbb\xbfconversation_id,speaker,text\n"        # 1: a BOM, accepted
                    b'1,a,"a turn\nover two lines"\n1,b,fine thanks\n'   # 2-3, 4
                    b'2,a,"never closed\n2,b,how are you\n2,a,good good\n'  # 5 unclosed; 6, 7 kept
                    b"3,a,nul\x00here\n3,b,ok then\n3,a,bad \xff byte\n3,b,right you are\n")  # 8 NUL, 10 bad byte
    out = tmp_path / "o"
    assert prepare_data.main(["--input", str(src), "--out", str(out), "--test_frac", "0", "--valid_frac", "0"]) == 0
    s = summary(out)
    m = {k: v["first"][0] for k, v in s["malformed"].items()}
    assert m["unclosed_quote"].startswith(f"{src}:5: a quoted field opened on this line is never closed")
    assert m["nul_byte"].startswith(f"{src}:8: NUL byte") and m["undecodable"].startswith(f"{src}:10: not UTF-8")
    train = (out / "train.tsv").read_text()
    assert "\x00" not in train and "never closed" not in train and "1.0 how are you" not in train
    assert "0.0 a turn over two lines\t1.0 fine thanks" in train and "0.0 how are you\t1.0 good good" in train
    assert s["conversations"] == 3 and sum(v["count"] for v in s["malformed"].values()) == 3


def test_a_bom_and_a_json_nul_escape(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + "\n".join(conversations(3)).encode() + b'\n["a\\u0000b", "c d"]\n')
    out = tmp_path / "o"
    assert prepare_data.main(["--input", str(src), "--out", str(out), "--test_frac", "0", "--valid_frac", "0"]) == 0
    s = summary(out)
    assert s["conversations"] == 3 and list(s["malformed"]) == ["nul_byte"]
    assert s["malformed"]["nul_byte"]["first"][0].startswith(f"{src}:4: turn 0: a NUL character")


def test_every_input_and_glob_is_read(tmp_path, capsys):
    for name, tag in (("a.jsonl", "a"), ("b.jsonl", "b"), ("c.jsonl", "c")):
        (tmp_path / name).write_text("\n".join(conversations(5, tag)) + "\n")
    out = tmp_path / "o"
    assert prepare_data.main(["--input", str(tmp_path / "a.jsonl"), "--input", str(tmp_path / "[bc].jsonl"),
                              "--out", str(out), "--test_frac", "0", "--valid_frac", "0"]) == 0
    assert summary(out)["conversations"] == 15
    assert f"read 3 input(s): {tmp_path / 'a.jsonl'}, {tmp_path / 'b.jsonl'}, {tmp_path / 'c.jsonl'}" in \
        capsys.readouterr().out
    assert prepare_data.main(["--input", str(tmp_path / "z*.jsonl"), "--out", str(tmp_path / "o2")]) == 1
    assert "z*.jsonl: no file matches" in capsys.readouterr().err


def test_an_earlier_import_is_not_replaced_unasked(tmp_path, capsys):
    (tmp_path / "a.jsonl").write_text("\n".join(conversations(5)) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(conversations(7, "b")) + "\n")
    out, flags = tmp_path / "o", ["--test_frac", "0", "--valid_frac", "0"]
    assert prepare_data.main(["--input", str(tmp_path / "a.jsonl"), "--out", str(out), *flags]) == 0
    before = (out / "train.tsv").read_text()
    assert prepare_data.main(["--input", str(tmp_path / "b.jsonl"), "--out", str(out), *flags]) == 1
    assert "already holds train.tsv" in capsys.readouterr().err and (out / "train.tsv").read_text() == before
    assert prepare_data.main(["--input", str(tmp_path / "b.jsonl"), "--out", str(out), "--overwrite", *flags]) == 0
    assert summary(out)["conversations"] == 7 and not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_a_closed_stdout_ends_quietly(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join(conversations(5)) + "\n")
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "prepare_data.py", "--input", str(tmp_path / "a.jsonl"), "--out",
                            str(tmp_path / "o")], cwd=REPO, env=ENV, stdout=w, stderr=subprocess.PIPE, text=True,
                           timeout=120)
    finally:
        os.close(w)
    assert p.returncode == cli.BROKEN_PIPE and p.stderr == "" and (tmp_path / "o" / "train.tsv").is_file()
