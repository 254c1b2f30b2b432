"""LoRA fine-tuning (peft) in LSP_train: real chats, exact resume after kill -9, the merged export
loading without peft, DDP equivalence, and adapter folders on the decoding paths."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gpt2_training.loop as loop
from gpt2_training.args import UsageError
from lsp_model.checkpoint import CheckpointError, load_model, read_state_dict, save_pretrained
from lsp_model.lora import quiet_peft
from lsp_model.model import build_model, forward_loss, load_config
from lsp_model.tokenizer import load_tokenizer, tokenizer_identity
from train_helpers import ListLoader, read_log, synthetic_batches, tiny_args

pytest.importorskip("peft", reason="LoRA needs peft (pip install 'dialogpt[lora]'; the test extra has it)")

TESTS = Path(__file__).resolve().parent


def make_base(tmp: Path, seed: int = 5) -> Path:
    """A random tiny GPT-2 saved as a transformers folder: the frozen base."""
    cfg = load_config(tiny_args(tmp).model_name_or_path)
    torch.manual_seed(seed)
    base = tmp / "base"
    if not base.is_dir():
        save_pretrained(build_model(cfg), base, tokenizer=load_tokenizer())
    return base


def lora_args(tmp: Path, base: Path, **kw):
    flags = dict(lora_r=4, lora_alpha=8, lora_dropout=0.1, init_checkpoint=base, lr_schedule="None",
                 learning_rate=1e-3, num_optim_steps=6, valid_step=2) | kw
    return tiny_args(tmp, **flags)


def batches(n=3, seed=1):
    return synthetic_batches(n, 4, 24, 256, seed=seed)


def train_rows(run_dir):
    return [r[:-1] for r in read_log(Path(run_dir) / "train_log.txt")]  # epoch_time differs


# ---- real chats: held-out loss falls

def chat_batches(tok, pairs, batch_size):
    from tiny_model import features
    rows = features(tok, pairs)
    out = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        T = max(len(r[0]) for r in chunk)
        ids = torch.tensor([r[0] + [0] * (T - len(r[0])) for r in chunk])
        pos = torch.tensor([list(range(len(r[0]))) + [0] * (T - len(r[0])) for r in chunk])
        lab = torch.tensor([r[1] + [-1] * (T - len(r[1])) for r in chunk])
        out.append((ids, pos, torch.zeros_like(ids), lab))
    return out


def heldout_loss(model, eval_batches) -> float:
    model.eval()
    with torch.no_grad():
        return sum(forward_loss(model, ids, pos, None, lab)[0].item() for ids, pos, _, lab in eval_batches)


def test_lora_on_real_chats_lowers_heldout_loss(tiny_dialogue_models, tmp_path):
    from tiny_model import chitchat_turns, exchanges
    fwd = tiny_dialogue_models["forward"]
    tok = load_tokenizer(fwd)
    seen = {ctx[0] for ctx, _ in tiny_dialogue_models["pairs"]}
    new = [p for p in exchanges(chitchat_turns(), 400) if p[0][0] not in seen]  # chats the base never saw
    train, held = chat_batches(tok, new[:96], 16), chat_batches(tok, new[96:160], 32)
    args = tiny_args(tmp_path, model_name_or_path=fwd, init_checkpoint=fwd, lora_r=8, lora_alpha=16,
                     lr_schedule="None", learning_rate=2e-3, train_batch_size=16, gradient_accumulation_steps=1,
                     num_optim_steps=18, valid_step=18, max_seq_length=128)
    res = loop.train(args, ListLoader(train))
    run = Path(res["run_dir"])
    before, after = heldout_loss(load_model(fwd), held), heldout_loss(load_model(run), held)
    assert after < before - 0.05 * len(held), (before, after)
    assert json.loads((run / "run_config.json").read_text())["n_trainable"] < res["model"].num_parameters() / 5
    # the merged export keeps the run's own tokenizer
    assert tokenizer_identity(load_tokenizer(run / "GP2-pretrain-step-18-hf")) == tokenizer_identity(tok)


# ---- checkpoints: the adapter alone, an exact resume after kill -9

KILL_SCRIPT = """
import os, signal, sys
sys.path[:0] = [{repo!r}, {tests!r}]
import torch
torch.set_num_threads(1)
from pathlib import Path
import gpt2_training.loop as loop
from test_lora import lora_args, batches
from train_helpers import ListLoader

class KillAt(ListLoader):  # kill -9 when micro-batch 7 is taken (after the step-2 checkpoint)
    def __iter__(self):
        for b in super().__iter__():
            if self.epoch == 2 and self.offset == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            yield b
loop.train(lora_args(Path({tmp!r}), Path({base!r})), KillAt(batches()))
"""


def test_lora_kill_9_then_resume_is_bit_identical(tmp_path, repo_dir):
    base = make_base(tmp_path)
    script = KILL_SCRIPT.format(repo=str(repo_dir), tests=str(TESTS), tmp=str(tmp_path / "k"), base=str(base))
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    run = next((tmp_path / "k" / "out").iterdir())
    assert (run / "GP2-pretrain-step-2-lora").is_dir() and not (run / "GP2-pretrain-step-4-lora").exists()
    # checkpoints hold the adapter alone: no .pkl, and every tensor is a LoRA one
    assert not list(run.glob("*.pkl"))
    st = torch.load(run / "GP2-pretrain-step-2.resume.pt", weights_only=True)
    assert "model" not in st and st["adapter"] and all(".lora_" in k for k in st["adapter"])
    assert st["optimizer"]["state"] and st["lora"]["r"] == 4
    resumed = loop.train(lora_args(tmp_path / "k", base, resume_from_checkpoint="last"), ListLoader(batches()))
    straight = loop.train(lora_args(tmp_path / "s", base), ListLoader(batches()))
    assert resumed["run_dir"] == str(run) and train_rows(run) == train_rows(straight["run_dir"])
    for name in ("GP2-pretrain-step-6.pkl", "GP2-pretrain-step-6-lora/adapter_model.safetensors"):
        a, b = read_state_dict(run / name), read_state_dict(Path(straight["run_dir"]) / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_resume_refuses_other_lora_settings_or_base(tmp_path):
    base = make_base(tmp_path)
    loop.train(lora_args(tmp_path, base, stop_after_steps=2), ListLoader(batches()))
    with pytest.raises(UsageError, match="other LoRA settings .*r 4 vs 8"):
        loop.train(lora_args(tmp_path, base, lora_r=8, resume_from_checkpoint="last"), ListLoader(batches()))
    other = make_base(tmp_path / "o", seed=6)
    with pytest.raises(UsageError, match="is not the base .* this run was trained on"):
        loop.train(lora_args(tmp_path, other, resume_from_checkpoint="last"), ListLoader(batches()))
    with pytest.raises(UsageError, match="is a LoRA run"):
        loop.train(tiny_args(tmp_path, resume_from_checkpoint="last", num_optim_steps=6, valid_step=2),
                   ListLoader(batches()))


def test_bad_lora_flags_are_one_line_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="--lora_r needs --init_checkpoint"):
        tiny_args(tmp_path, lora_r=4)
    with pytest.raises(UsageError, match="--lora_target nonsense"):
        loop.train(lora_args(tmp_path, make_base(tmp_path), lora_target="nonsense"), ListLoader(batches()))


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_lora_with_mixed_precision(tmp_path, precision):
    from lsp_model.checkpoint import save_original_pkl
    extra = dict(fp16="true") if precision == "fp16" else dict(bf16="true")
    base = save_original_pkl(load_model(make_base(tmp_path)), tmp_path / "base.pkl")  # an original-layout base
    res = loop.train(lora_args(tmp_path, base, learning_rate=3e-3, **extra), ListLoader(batches()))
    run = Path(res["run_dir"])
    ids = torch.randint(1, 256, (1, 8))
    torch.testing.assert_close(load_model(run / "GP2-pretrain-step-6-lora")(ids).logits,
                               load_model(run / "GP2-pretrain-step-6-hf")(ids).logits, rtol=1e-5, atol=1e-5)
    losses = [float(r[3]) for r in read_log(run / "train_log.txt")[1:]]
    assert losses[-1] < losses[0]
    adapter = read_state_dict(run / "GP2-pretrain-step-6-lora" / "adapter_model.safetensors")
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in adapter.values())
    want = torch.float16 if precision == "fp16" else torch.float32  # the merged .pkl as the run's .pkl would be
    assert read_state_dict(run / "GP2-pretrain-step-6.pkl")["transformer.wte.weight"].dtype == want


# ---- the merged export: plain transformers, no peft, same logits

NO_PEFT_SCRIPT = """
import sys
sys.modules["peft"] = None  # any `import peft` now fails
import torch
from transformers import AutoModelForCausalLM
sys.path[:0] = [{repo!r}]
from lsp_model.checkpoint import load_model
ids = torch.load({ids!r}, weights_only=True)
out = {{}}
with torch.no_grad():
    for hf, pkl in {pairs!r}:
        out[hf] = AutoModelForCausalLM.from_pretrained(hf).eval()(ids).logits
        out[pkl] = load_model(pkl, config=hf).eval()(ids).logits  # tiny width: head count not inferable
torch.save(out, {out!r})
"""


def test_merged_export_loads_without_peft_and_equals_the_adapter_model(tmp_path, repo_dir):
    import peft

    from lsp_model.convert import main as convert_main
    base = make_base(tmp_path)
    res = loop.train(lora_args(tmp_path, base, lora_dropout=0.0), ListLoader(batches()))
    run = Path(res["run_dir"])
    # the adapter model, unmerged: base + peft's LoRA layers
    with quiet_peft():
        adapter = peft.PeftModel.from_pretrained(load_model(base), str(run / "GP2-pretrain-step-6-lora")).eval()
    ids = torch.randint(1, 256, (2, 16))
    torch.save(ids, tmp_path / "ids.pt")
    with torch.no_grad():
        want = adapter(input_ids=ids).logits
        assert (want - load_model(base).eval()(ids).logits).abs().max() > 1e-3  # the adapter does something
    # python -m lsp_model.convert --merge writes the same export from the adapter folder
    # (the adapter folder, or the finished run folder: its newest adapter)
    for src, dst in ((run / "GP2-pretrain-step-6-lora", "merged"), (run, "merged.pkl")):
        assert convert_main(["--merge", str(src), str(tmp_path / dst)]) == 0
    pairs = [(str(run / "GP2-pretrain-step-6-hf"), str(run / "GP2-pretrain-step-6.pkl")),
             (str(tmp_path / "merged"), str(tmp_path / "merged.pkl"))]
    out = tmp_path / "logits.pt"
    script = NO_PEFT_SCRIPT.format(repo=str(repo_dir), ids=str(tmp_path / "ids.pt"), pairs=pairs, out=str(out))
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    got = torch.load(out, weights_only=True)
    assert len(got) == 4
    for logits in got.values():
        torch.testing.assert_close(logits, want, rtol=0, atol=1e-5)
    assert "lm_head.decoder.weight" in read_state_dict(run / "GP2-pretrain-step-6.pkl")  # original layout
    assert convert_main(["--merge", str(base), str(tmp_path / "x")]) == 1  # not an adapter: one line


def test_decoding_paths_take_an_adapter_folder(tiny_dialogue_models, tmp_path):
    from lsp_model.decoding import load_decoder
    fwd = tmp_path / "base"
    shutil.copytree(tiny_dialogue_models["forward"], fwd)  # moved away below
    tok = load_tokenizer(fwd)
    train = chat_batches(tok, tiny_dialogue_models["pairs"][:32], 8)
    res = loop.train(tiny_args(tmp_path, model_name_or_path=fwd, init_checkpoint=fwd, lora_r=4, lr_schedule="None",
                               max_seq_length=128, num_optim_steps=6, valid_step=2, stop_after_steps=4),
                     ListLoader(train))
    run = Path(res["run_dir"])
    ids = train[0][0][:2]
    want = res["model"].eval()(ids).logits  # the training model, LoRA layers in place
    for path in (run / "GP2-pretrain-step-4-lora", run):  # the adapter, or the run folder's newest one
        model, dec_tok, eos, _ = load_decoder(path)  # decode.py, interact.py, serve.py and MMI load this way
        torch.testing.assert_close(model(ids).logits, want, rtol=1e-5, atol=1e-5)  # merged vs unmerged: rounding
        assert tokenizer_identity(dec_tok) == tokenizer_identity(tok)  # the run's own, from the adapter folder
    fwd.rename(tmp_path / "moved")
    with pytest.raises(CheckpointError, match=r"its base model .*base is not found .*--base"):
        load_model(run / "GP2-pretrain-step-4-lora")


# ---- DDP: 2 gloo ranks with LoRA == 1 rank with the same total batch

def _ddp_worker(rank, port, tmp, base, micro_batches):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    args = lora_args(Path(tmp), Path(base), lora_dropout=0.0, train_batch_size=4, gradient_accumulation_steps=1,
                     num_optim_steps=3, valid_step=3, device="cpu")
    loop.train(args, ListLoader([micro_batches[rank]]))


@pytest.mark.slow
@pytest.mark.distributed
def test_lora_ddp_two_ranks_equal_one_rank(tmp_path):
    import torch.multiprocessing as mp
    base = make_base(tmp_path)
    mb = batches(2, seed=3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path / "ddp"), str(base), mb), nprocs=2, join=True)
    single = loop.train(lora_args(tmp_path / "one", base, lora_dropout=0.0, train_batch_size=8,
                                  gradient_accumulation_steps=2, num_optim_steps=3, valid_step=3), ListLoader(mb))
    ddp_run = next((tmp_path / "ddp" / "out").iterdir())
    name = "GP2-pretrain-step-3-lora/adapter_model.safetensors"
    a, b = read_state_dict(ddp_run / name), read_state_dict(Path(single["run_dir"]) / name)
    assert a.keys() == b.keys() and any(k.endswith("lora_B.weight") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=2e-6)
    assert max(b[k].abs().max().item() for k in b if "lora_B" in k) > 1e-4  # lora_B starts at 0: it trained
    ra, rb = read_log(ddp_run / "train_log.txt"), read_log(Path(single["run_dir"]) / "train_log.txt")
    for x, y in zip(ra[1:], rb[1:]):
        assert abs(float(x[3]) - float(y[3])) < 1e-5 and x[5:7] == y[5:7]  # mean loss, token counts


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_frozen_head_skips_its_gradient_and_keeps_the_others(dtype):
    from gpt2_training.loss import linear_cross_entropy
    torch.manual_seed(0)
    h0, w0 = torch.randn(2, 6, 8), torch.randn(20, 8)
    labels = torch.randint(-1, 20, (2, 6))
    grads = {}
    for frozen in (False, True):
        h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_(not frozen)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss, _ = linear_cross_entropy(h, w, labels)
        loss.backward()
        grads[frozen] = (loss.detach(), h.grad, w.grad)
    assert grads[True][2] is None and grads[False][2] is not None
    assert torch.equal(grads[True][0], grads[False][0]) and torch.equal(grads[True][1], grads[False][1])


def test_cli_without_peft_is_one_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    import LSP_train
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    argv = ["--model_name_or_path", tiny_args(tmp_path).model_name_or_path, "--train_input_file", "x.db",
            "--output_dir", tmp_path / "out", "--init_checkpoint", tmp_path, "--lora_r", "8"]
    with pytest.raises(SystemExit) as e:
        LSP_train.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err == ["LSP_train.py: error: --lora_r needs the peft library: pip install "
                                         "'dialogpt[lora]'"]
