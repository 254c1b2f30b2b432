"""The benchmark's re-implementation of the original prepro.py is the original: same features,
byte for byte, on the golden inputs (so bench_prepro.py measures against the real algorithm)."""
import sys

import pytest

from lsp_model.tokenizer import find_bpe_files


@pytest.fixture(scope="module")
def original(repo_dir):
    sys.path.insert(0, str(repo_dir / "benchmarks"))
    import original_prepro
    return original_prepro


@pytest.mark.parametrize("max_len,reverse,tag", [(128, False, "128"), (128, True, "128.reverse"), (64, False, "64")])
def test_original_reimplementation_gives_golden_features(original, golden, tmp_path, max_len, reverse, tag):
    tok = original.GPT2Tokenizer(*find_bpe_files())
    n = original.prepro(golden / "prepro/train.tsv", tmp_path / "db", tok, max_seq_len=max_len, reverse=reverse)
    want = (golden / f"prepro/features.{tag}.jsonl").read_text()
    assert n == want.count("\n") > 100
    assert original.dump(tmp_path / "db") == want
