"""Our model + loss against the original's outputs on the golden tiny model and batch."""
import json

import pytest
import torch

from lsp_model.checkpoint import load_model
from lsp_model.model import forward_logits, forward_loss, forward_pointwise, load_config, token_nll


def rel(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return ((a - b).abs() / b.abs().clamp_min(1e-30)).max().item()


@pytest.fixture(scope="module")
def gm(golden):
    d = golden / "model"
    out = torch.load(d / "outputs.pt", weights_only=True)
    if "logits_first2" in out:  # the full set: compare the columns the bundled copy keeps
        out["logits_first2_every32"] = out.pop("logits_first2")[..., ::32]
    return dict(model=load_model(d / "init.pkl", config=d / "config.json"),
                batch=torch.load(d / "batch.pt", weights_only=True), out=out,
                grads=json.loads((d / "grads.json").read_text()), dir=d)


def test_config_original_keys(golden):
    c = load_config(golden / "model" / "config.json")
    assert (c.n_layer, c.n_embd, c.n_head, c.n_positions, c.vocab_size) == (2, 64, 4, 128, 50257)
    assert c.resid_pdrop == c.embd_pdrop == c.attn_pdrop == 0.0 and c.activation_function == "gelu_new"


@pytest.mark.parametrize("size,layers,embd,heads", [("117M", 12, 768, 12), ("345M", 24, 1024, 16), ("762M", 36, 1280, 20)])
def test_shipped_configs(repo_dir, size, layers, embd, heads):
    c = load_config(repo_dir / "configs" / size)
    assert (c.n_layer, c.n_embd, c.n_head, c.n_positions, c.vocab_size) == (layers, embd, heads, 1024, 50257)
    assert c.layer_norm_epsilon == 1e-5 and c.resid_pdrop == c.attn_pdrop == c.embd_pdrop == 0.0


def test_loss_ppl_pointwise(gm):
    b, o, m = gm["batch"], gm["out"], gm["model"]
    with torch.no_grad():
        loss, ppl = forward_loss(m, b["input_ids"], b["position_ids"], None, b["labels"])
        nll, pppl = forward_pointwise(m, b["input_ids"], b["position_ids"], None, b["labels"])
        loss_t, ppl_t = forward_loss(m, b["input_ids"], b["position_ids"], b["token_type_ids"], b["labels"])
        nll_t, _ = forward_pointwise(m, b["input_ids"], b["position_ids"], b["token_type_ids"], b["labels"])
    assert rel(loss, o["loss"]) < 1e-5 and rel(ppl, o["ppl"]) < 1e-5
    assert rel(nll, o["forward_pointwise_nll"]) < 1e-5 and rel(pppl, o["forward_pointwise_ppl"]) < 1e-5
    assert rel(loss_t, o["loss_with_token_type_ids"]) < 1e-5 and rel(ppl_t, o["ppl_with_token_type_ids"]) < 1e-5
    assert rel(nll_t, o["forward_pointwise_nll_with_token_type_ids"]) < 1e-5
    assert loss_t.item() != loss.item()  # token types really go through the word embedding


def test_logits(gm):
    b, o, m = gm["batch"], gm["out"], gm["model"]
    with torch.no_grad():
        logits = forward_logits(m, b["input_ids"], b["position_ids"])
    # includes the collate padding of row 0 (positions 24..31): the whole row is attended causally
    assert (logits[:2, :32, ::32] - o["logits_first2_every32"]).abs().max() < 1e-5
    assert rel(logits.double().logsumexp(-1), o["logits_logsumexp"]) < 1e-5
    assert torch.equal(logits.argmax(-1), o["logits_argmax"])
    assert (token_nll(logits, b["labels"]) - o["token_ce"]).abs().max() < 1e-4


def test_grads(gm, golden):
    m = load_model(golden / "model" / "init.pkl", config=golden / "model" / "config.json")
    b = gm["batch"]
    loss, _ = forward_loss(m, b["input_ids"], b["position_ids"], None, b["labels"])
    loss.backward()
    names = [n for n, _ in m.named_parameters()]
    assert names == list(gm["grads"]["grads"])
    for n, p in m.named_parameters():
        g = gm["grads"]["grads"][n]
        norm = p.grad.double().norm().item()
        assert abs(norm - g["norm"]) <= 1e-4 * g["norm"] + 1e-12, n
        # sums of near-cancelling gradients: compare relative to the norm
        assert abs(p.grad.double().sum().item() - g["sum"]) <= 1e-4 * max(g["norm"], 1e-12), n


def test_fp16_checkpoint_loads_as_fp32(gm):
    d, b, o = gm["dir"], gm["batch"], gm["out"]
    m = load_model(d / "init.fp16.pkl", config=d / "config.json")
    assert next(m.parameters()).dtype == torch.float32
    with torch.no_grad():
        loss, ppl = forward_loss(m, b["input_ids"], b["position_ids"], None, b["labels"])
    assert rel(loss, o["loss_from_fp16_checkpoint"]) < 1e-5 and rel(ppl, o["ppl_from_fp16_checkpoint"]) < 1e-5
