"""The chat template in every folder we write: transformers renders DialoGPT's format token for
token as our own chat and server do, marks the replies for training, and chats through
`pipeline("text-generation")`; `convert --chat_template` adds it to a downloaded folder."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from lsp_model.chat import encode_context, history_context
from lsp_model.chat_template import CHAT_TEMPLATE
from lsp_model.checkpoint import save_pretrained
from lsp_model.convert import main as convert_main
from lsp_model.generate import generate, make_gen_config
from lsp_model.model import build_model, make_config
from lsp_model.tokenizer import EOS_ID, decode, encode_batch, load_tokenizer
from lsp_serve.engine import Engine
from lsp_serve.protocol import parse_request

CONVERSATIONS = [
    [{"role": "user", "content": "Hello there!"}],
    [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "  How are you?\n"},
     {"role": "assistant", "content": "Fine, thanks. And you?"}, {"role": "developer", "content": "be brief"},
     {"role": "user", "content": "Great — 素晴らしい 🙂 isn't it?"}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "parts"}]},
     {"role": "assistant", "content": "ok"}, {"role": "user", "content": "  spaced   words  "}],
]


def turns_of(messages) -> list[str]:
    """What our chat keeps of OpenAI messages: user/assistant text, parts joined, stripped."""
    def text(c):
        return c if isinstance(c, str) else " ".join(p["text"] for p in c)
    return [text(m["content"]).strip() for m in messages if m["role"] in ("user", "assistant")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(make_config(n_layer=2, n_embd=32, n_head=2, n_positions=128)).eval()
    out = save_pretrained(model, tmp_path_factory.mktemp("chat") / "hf", tokenizer=load_tokenizer())
    return {"dir": out, "model": model, "tok": load_tokenizer(out)}


@pytest.fixture(scope="module")
def hf_tok(exported):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(exported["dir"])


def test_every_tokenizer_folder_carries_the_template(exported, hf_tok):
    cfg = json.loads((exported["dir"] / "tokenizer_config.json").read_text())
    assert cfg["chat_template"] == CHAT_TEMPLATE == hf_tok.chat_template


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_apply_chat_template_equals_our_context_encoding(exported, hf_tok, messages):
    ours = encode_context(exported["tok"], turns_of(messages), EOS_ID)
    for prompt in (False, True):  # add_generation_prompt adds nothing after the last EOS
        theirs = hf_tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=prompt, return_dict=True)
        assert theirs["input_ids"] == ours


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_server_context_equals_apply_chat_template(exported, hf_tok, messages):
    engine = Engine(exported["model"], exported["tok"], EOS_ID, 50257, make_gen_config("greedy"))
    job = engine.prepare_chat(parse_request(json.dumps({"model": "m", "messages": messages}).encode()))
    assert job.context == hf_tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]


def test_history_trimming_keeps_whole_templated_turns(exported, hf_tok):
    """The chat's history budget drops whole old turns: what is left is the template's rendering
    of the newest messages."""
    msgs = CONVERSATIONS[1]
    turns = encode_batch(exported["tok"], turns_of(msgs))
    ctx, dropped = history_context(turns, EOS_ID, budget=len(turns[-1]) + len(turns[-2]) + 2)
    assert dropped == 1
    newest = [m for m in msgs if m["role"] in ("user", "assistant")][-2:]
    assert ctx == hf_tok.apply_chat_template(newest, tokenize=True, return_dict=True)["input_ids"]


def test_assistant_mask_is_the_reply_and_its_eos(exported, hf_tok):
    msgs = CONVERSATIONS[1]
    r = hf_tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    user1, bot, user2 = encode_batch(exported["tok"], turns_of(msgs))
    want = [0] * (len(user1) + 1) + [1] * (len(bot) + 1) + [0] * (len(user2) + 1)
    assert r["assistant_masks"] == want and len(r["input_ids"]) == len(want)


def test_pipeline_chats_with_an_exported_folder(exported):
    from transformers import pipeline
    chat = pipeline("text-generation", model=str(exported["dir"]), device="cpu")
    msgs = CONVERSATIONS[1]
    # lengths forced, greedy, no n-gram ban: the reply is our own greedy reply whatever it says
    out = chat(msgs, max_new_tokens=6, min_new_tokens=6, do_sample=False, no_repeat_ngram_size=0)
    got = out[0]["generated_text"]
    assert got[:-1] == msgs and got[-1]["role"] == "assistant"
    ctx = encode_context(exported["tok"], turns_of(msgs), EOS_ID)
    want = generate(exported["model"], [ctx], make_gen_config("greedy", max_new_tokens=6, min_new_tokens=6), EOS_ID)
    assert got[-1]["content"] == decode(exported["tok"], want[0][0]["ids"]).replace("<|endoftext|>", "")


def test_convert_adds_the_template_to_a_downloaded_folder(exported, tmp_path, capsys):
    from transformers import AutoTokenizer
    d = tmp_path / "DialoGPT-small"  # a hub download: no template (microsoft/DialoGPT-* have none)
    d.mkdir()
    for f in ("config.json", "model.safetensors", "vocab.json", "merges.txt"):
        shutil.copy(exported["dir"] / f, d / f)
    (d / "tokenizer_config.json").write_text('{"model_max_length": 1024}')
    with pytest.raises(ValueError, match="chat_template is not set"):
        AutoTokenizer.from_pretrained(d).apply_chat_template(CONVERSATIONS[0])
    assert convert_main(["--chat_template", str(d)]) == 0
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    assert cfg["model_max_length"] == 1024 and cfg["chat_template"] == CHAT_TEMPLATE
    tok = AutoTokenizer.from_pretrained(d)
    assert tok.apply_chat_template(CONVERSATIONS[1], tokenize=True, return_dict=True)["input_ids"] == \
        encode_context(exported["tok"], turns_of(CONVERSATIONS[1]), EOS_ID)
    assert convert_main(["--chat_template", str(d)]) == 0
    assert "already has" in capsys.readouterr().out
    # another template is kept unless --overwrite, with one line naming the file
    (d / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    capsys.readouterr()
    assert convert_main(["--chat_template", str(d)]) == 1
    err = capsys.readouterr().err
    assert "chat_template.jinja" in err and "--overwrite" in err and err.count("\n") == 1
    assert convert_main(["--chat_template", str(d), "--overwrite"]) == 0
    assert not (d / "chat_template.jinja").exists()
    assert AutoTokenizer.from_pretrained(d).chat_template == CHAT_TEMPLATE


def test_convert_chat_template_refuses_a_non_model_folder(tmp_path, capsys):
    assert convert_main(["--chat_template", str(tmp_path)]) == 1
    assert "no tokenizer files" in capsys.readouterr().err


@pytest.mark.slow
def test_transformers_serve_chats_offline_with_an_exported_folder(exported):
    """`transformers serve` (a peer server; needs accelerate) answers a chat request on CPU with
    no network: its prompt is our context (the system message dropped, one EOS after the turn)."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from lsp_serve.launch import free_port

    port = free_port()
    cmd = [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve",
           str(exported["dir"]), "--port", str(port), "--device", "cpu"]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        url, deadline, r = f"http://localhost:{port}", time.monotonic() + 180, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-2000:]
        msgs = CONVERSATIONS[1]
        r = httpx.post(url + "/v1/chat/completions", timeout=120,
                       json={"model": str(exported["dir"]), "messages": msgs, "max_tokens": 4})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["usage"]["prompt_tokens"] == len(encode_context(exported["tok"], turns_of(msgs), EOS_ID))
        assert 1 <= body["usage"]["completion_tokens"] <= 4
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
