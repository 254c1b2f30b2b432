"""Our decoder against transformers' `generate`, the exported generation config, and no
deprecated transformers API on the decoding path."""
from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch
from transformers import GenerationConfig

from lsp_model.chat import encode_context
from lsp_model.checkpoint import load_model, save_pretrained
from lsp_model.generate import CHAT_PRESET, PRESETS, generate, make_gen_config
from lsp_model.model import build_model, make_config
from lsp_model.tokenizer import eos_id, load_tokenizer


@pytest.fixture(scope="module")
def tiny(tiny_dialogue_models):
    path = tiny_dialogue_models["forward"]
    tok = load_tokenizer(path)
    eos = eos_id(tok)
    ctxs = [encode_context(tok, c, eos) for c, _ in tiny_dialogue_models["pairs"][:24]]
    return dict(model=load_model(path).eval(), eos=eos, ctxs=ctxs, path=path)


def hf_reply(model, ctx, eos, **kw) -> list[int]:
    """transformers' generate on one unpadded context; the reply without its EOS."""
    cfg = GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, min_new_tokens=1,
                           max_new_tokens=30, do_sample=False, **kw)
    with torch.no_grad():
        out = model.generate(torch.tensor([ctx]), attention_mask=torch.ones(1, len(ctx), dtype=torch.long),
                             generation_config=cfg)[0, len(ctx):].tolist()
    return out[:-1] if out and out[-1] == eos else out


def test_greedy_equals_transformers_generate(tiny):
    ours = generate(tiny["model"], tiny["ctxs"], make_gen_config("greedy", max_new_tokens=30), tiny["eos"])
    for c, h in zip(tiny["ctxs"], ours):
        assert h[0]["ids"] == hf_reply(tiny["model"], c, tiny["eos"], num_beams=1)


def test_beam_equals_transformers_generate_where_rules_agree(tiny):
    """Same beam rules as transformers when no n-gram is banned (see docs/decoding.md for the two
    differences: we renormalise after banning tokens, and ban n-grams of the reply only)."""
    cfg = make_gen_config("dstc_beam", num_beams=4, max_new_tokens=30)
    ctxs = tiny["ctxs"][:12]
    ours = generate(tiny["model"], ctxs, cfg, tiny["eos"])
    for c, h in zip(ctxs, ours):
        assert h[0]["ids"] == hf_reply(tiny["model"], c, tiny["eos"], num_beams=4, length_penalty=1.0,
                                       early_stopping=False)


def test_decoding_uses_no_deprecated_transformers_api(tiny):
    """transformers announces removals as FutureWarnings and as `warning_once` log lines
    (`past_key_values` -> `cache`); neither may come from our decoding loop."""
    logging.Logger.warning_once.cache_clear()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("transformers")
    log.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            warnings.simplefilter("error", DeprecationWarning)
            for preset, extra in (("greedy", {}), ("dstc_beam", {"num_beams": 3}),
                                  ("topk", {"num_return_sequences": 2})):
                cfg = make_gen_config(preset, max_new_tokens=5, **extra)
                generate(tiny["model"], tiny["ctxs"][:3], cfg, tiny["eos"])
    finally:
        log.removeHandler(handler)
    assert [r.getMessage() for r in records if "deprecat" in r.getMessage().lower()] == []


def test_exported_generation_config_is_the_chat_preset(tiny):
    """min_new_tokens 1 (no empty reply), the tokenizer's own EOS, and the card says what
    no_repeat_ngram_size 3 does to greedy decoding."""
    d = json.loads((tiny["path"] / "generation_config.json").read_text())
    want = make_gen_config(CHAT_PRESET)
    assert d["min_new_tokens"] == 1 and d["eos_token_id"] == d["pad_token_id"] == tiny["eos"]
    for k, v in PRESETS[CHAT_PRESET].items():
        assert d[k] == v == getattr(want, k), k
    card = (tiny["path"] / "README.md").read_text()
    assert "`no_repeat_ngram_size` 3" in card and "no_repeat_ngram_size=0" in card


def test_exported_model_greedy_is_never_empty(tmp_path):
    """A model whose argmax is always EOS: transformers' plain greedy on the exported folder
    still returns a token, as ours does."""
    model = build_model(make_config(n_layer=1, n_embd=32, n_head=2, n_positions=32)).eval()
    eos = 50256
    with torch.no_grad():  # every hidden state becomes wte[EOS], the longest embedding
        model.transformer.wte.weight[eos] *= 20
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(model.transformer.wte.weight[eos])
    ctx = [15496, 995, eos]
    assert generate(model, [ctx], make_gen_config("greedy", max_new_tokens=3), eos)[0][0]["ids"]
    save_pretrained(model, tmp_path / "hf")
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        out = hf.generate(torch.tensor([ctx]), attention_mask=torch.ones(1, 3, dtype=torch.long),
                          do_sample=False, max_new_tokens=3)[0, 3:].tolist()
    assert out and out[0] != eos


@pytest.mark.parametrize("script", ["decode", "interact"])
def test_cli_refuses_to_guess_the_head_count(tmp_path, capsys, script):
    """A run-folder .pkl of an unreleased width without config.json: one line asking for --config,
    from the same loader (lsp_model.checkpoint) as python -m lsp_model.convert."""
    import importlib

    from lsp_model.checkpoint import save_original_pkl
    save_original_pkl(build_model(make_config(n_layer=1, n_embd=32, n_head=4, n_positions=16)),
                      tmp_path / "GP2-pretrain-step-1.pkl")
    (tmp_path / "ctx.txt").write_text("hello\n")
    argv = ["--model", str(tmp_path)]
    if script == "decode":
        argv += ["--input", str(tmp_path / "ctx.txt"), "--output", str(tmp_path / "hyp.txt")]
    assert importlib.import_module(script).main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "n_embd=32" in err and "--config" in err, err


@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning])
def test_suite_turns_deprecations_into_errors(category):
    """pyproject's filterwarnings: a deprecation raised in any test fails it."""
    with pytest.raises(category):
        warnings.warn("removed in the next release", category)
