"""Line numbers in TSV error messages count lines as the reader splits them: a file with
lone-CR line breaks gets its real numbers, not "1" for every line."""
from __future__ import annotations

import pytest

from lsp_data.loader import DynamicBatchingLoader
from lsp_data.prepro import PreproError, build_db
from lsp_data.tsv import iter_raw_lines, line_ref
from lsp_model.tokenizer import load_tokenizer


def test_line_ref():
    assert line_ref("c.tsv", 7, 7) == "c.tsv:7"
    assert line_ref("c.tsv", 3, 1) == "c.tsv:3 (line 1 counting only \\n)"


def test_eval_loader_names_the_lone_cr_line(tmp_path):
    p = tmp_path / "eval.tsv"
    p.write_bytes(b"hi there\tyes\rhow are you\tfine\r\xff bad\tbytes\r")
    assert [n for n, _, _ in iter_raw_lines(p)] == [1, 2, 3]
    loader = DynamicBatchingLoader(p, load_tokenizer(), True, batch_size=1, max_seq_length=32)
    with pytest.raises(ValueError, match=r"eval\.tsv:3 \(line 1 counting only \\n\): 'utf-8' codec"):
        list(loader)


def test_strict_prepro_names_the_lone_cr_line(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_bytes(b"1.0 a\t1.0 b\r1.0 c\t1.0 d\r1.0 no tab here\r1.0 e\t1.0 f\r")
    with pytest.raises(PreproError, match=r"c\.tsv:3 \(line 1 counting only \\n\): malformed line \(missing_tab\)"):
        build_db(p, strict=True, progress=False)
