"""Checkpoint formats, the converter and bad-input handling."""
import json
import os
import pickle
import random
import subprocess
import sys

import pytest
import torch

from lsp_model.checkpoint import (CheckpointError, infer_config, load_model, read_state_dict,
                                  save_original_pkl, save_pretrained)
from lsp_model.convert import main as convert_main
from lsp_model.model import build_model, forward_logits, make_config

TINY = dict(n_layer=2, n_embd=64, n_head=4, n_positions=128)


@pytest.fixture(scope="module")
def gdir(golden):
    return golden / "model"


def params_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", ["init.pkl", "init.fp16.pkl", "init.module.pkl"])
def test_golden_files_load(gdir, name):
    keys = json.loads((gdir / "init.keys.json").read_text())
    m = load_model(gdir / name, config=gdir / "config.json")
    ref = read_state_dict(gdir / "init.pkl")
    sd = m.state_dict()
    for k, v in ref.items():
        if k.endswith("attn.bias"):
            continue
        ours = sd["lm_head.weight" if k == "lm_head.decoder.weight" else k]
        tol = 1e-3 if "fp16" in name else 0
        assert (ours - v.float()).abs().max() <= tol * v.abs().max(), k
    assert m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr()
    assert sum(p.numel() for p in m.parameters()) == keys["n_params_unique"]


def test_transformer_only_gpt2_dict(tmp_path, gdir):
    sd = read_state_dict(gdir / "init.pkl")
    gpt2 = {k.removeprefix("transformer."): v for k, v in sd.items() if k.startswith("transformer.")}
    torch.save(gpt2, tmp_path / "pytorch_model.bin")
    m = load_model(tmp_path / "pytorch_model.bin", config=gdir / "config.json")
    assert params_equal(m, load_model(gdir / "init.pkl"))


@pytest.mark.parametrize("n_embd, n_head", [(768, 12), (1024, 16), (1280, 20)])
def test_infer_released_sizes(n_embd, n_head):
    # shapes only (meta tensors): what a released 117M/345M/762M checkpoint holds
    sd = {"transformer.wte.weight": torch.empty(50257, n_embd, device="meta"),
          "transformer.wpe.weight": torch.empty(1024, n_embd, device="meta")}
    sd |= {f"transformer.h.{i}.mlp.c_fc.weight": torch.empty(n_embd, 4 * n_embd, device="meta") for i in range(3)}
    c = infer_config(sd)
    assert (c.n_layer, c.n_embd, c.n_head, c.n_positions, c.vocab_size) == (3, n_embd, n_head, 1024, 50257)


def test_infer_refuses_unreleased_width():
    """n_embd 128 with 4 heads reloaded as 2 heads: same shapes, other outputs. Refused instead."""
    sd = build_model(make_config(n_layer=1, n_embd=128, n_head=4, n_positions=64, vocab_size=100)).state_dict()
    with pytest.raises(CheckpointError, match="n_embd=128 .*--config"):
        infer_config(sd)


def test_pkl_dir_pkl_roundtrip_and_transformers(tmp_path, gdir):
    assert convert_main([str(gdir / "init.pkl"), str(tmp_path / "hf")]) == 0
    hf = tmp_path / "hf"
    for f in ("config.json", "model.safetensors", "generation_config.json", "vocab.json", "merges.txt",
              "tokenizer.json", "README.md"):
        assert (hf / f).is_file(), f
    assert convert_main([str(hf), str(tmp_path / "back.pkl")]) == 0
    a, b = torch.load(gdir / "init.pkl", weights_only=True), torch.load(tmp_path / "back.pkl", weights_only=True)
    assert list(a) == list(b)
    assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    theirs = AutoModelForCausalLM.from_pretrained(hf).eval()
    ours = load_model(gdir / "init.pkl").eval()
    ids = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(theirs(ids).logits, forward_logits(ours, ids))
    assert AutoTokenizer.from_pretrained(hf).encode("Hello world") == [15496, 995]


def test_fp16_pkl_like_released(tmp_path, gdir):
    assert convert_main([str(gdir / "init.pkl"), str(tmp_path / "h.pkl"), "--fp16"]) == 0
    a, b = torch.load(gdir / "init.fp16.pkl", weights_only=True), torch.load(tmp_path / "h.pkl", weights_only=True)
    assert all(b[k].dtype == torch.float16 and torch.equal(a[k], b[k]) for k in a)


def test_config_needed_for_tiny_heads(tmp_path, gdir):
    """Without a config a tiny model's head count is not guessed: one line asking for --config."""
    import shutil
    shutil.copy(gdir / "init.pkl", tmp_path / "x.pkl")
    with pytest.raises(CheckpointError, match=r"x\.pkl: .*n_embd=64 .*pass --config"):
        load_model(tmp_path / "x.pkl")
    assert load_model(tmp_path / "x.pkl", config=gdir).config.n_head == 4
    r = subprocess.run([sys.executable, "-m", "lsp_model.convert", str(tmp_path / "x.pkl"), str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--config" in r.stderr
    assert not (tmp_path / "o").exists()


def test_torch_saved_code_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))
    torch.save({"transformer.wte.weight": Evil()}, tmp_path / "evil.pkl")
    with pytest.raises(CheckpointError, match="refused to load: the pickle holds objects other than tensors"):
        read_state_dict(tmp_path / "evil.pkl")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content", [random.Random(0).randbytes(4096), b"\x80\x02" + bytes(range(256)) * 4, b"plain text"],
                         ids=["random", "pickle-protocol-prefix", "text"])
def test_random_bytes_say_not_a_checkpoint(tmp_path, content):
    p = tmp_path / "rand.pkl"
    p.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        read_state_dict(p)
    assert str(e.value) == f"{p}: not a PyTorch checkpoint (corrupt or truncated?)"


def test_pickle_with_code_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))
    p = tmp_path / "evil.pkl"
    with open(p, "wb") as f:
        pickle.dump({"transformer.wte.weight": Evil()}, f)
    with pytest.raises(CheckpointError, match="refused"):
        load_model(p)
    assert not (tmp_path / "pwned").exists()


def test_wrong_size_names_tensors(gdir):
    with pytest.raises(CheckpointError) as e:
        load_model(gdir / "init.pkl", config=make_config(n_layer=3, n_embd=128, n_head=2, n_positions=128))
    msg = str(e.value)
    assert "transformer.wte.weight: checkpoint (50257, 64) vs model (50257, 128)" in msg
    assert "missing" in msg and "init.pkl" in msg


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint", None])
def test_truncated_or_garbage(tmp_path, gdir, content):
    p = tmp_path / "bad.pkl"
    p.write_bytes(content if content is not None else (gdir / "init.pkl").read_bytes()[:100_000])
    with pytest.raises(CheckpointError) as e:
        load_model(p, config=gdir)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_not_a_state_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pkl")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pkl")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        load_model(tmp_path / "nothere.pkl")


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "bad.pkl").write_bytes(b"junk")
    r = subprocess.run([sys.executable, "-m", "lsp_model.convert", str(tmp_path / "bad.pkl"), str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_save_is_atomic(tmp_path, monkeypatch, gdir):
    """A save that dies half-way leaves the previous checkpoint intact and no file under the final name."""
    m = load_model(gdir / "init.pkl")
    target = tmp_path / "GP2-pretrain-step-1.pkl"
    save_original_pkl(m, target)
    before = target.read_bytes()

    def dying_save(obj, f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_original_pkl(m, target)
    with pytest.raises(KeyboardInterrupt):
        save_original_pkl(m, tmp_path / "new.pkl")
    assert target.read_bytes() == before and not (tmp_path / "new.pkl").exists()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_save_pretrained_atomic_dir(tmp_path, monkeypatch, gdir):
    m = load_model(gdir / "init.pkl")
    monkeypatch.setattr(type(m), "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_pretrained(m, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
