"""serve.py as users meet it: a real server subprocess on 127.0.0.1 driven by the official
`openai` client and plain HTTP (errors, API key, batching, a 64-client load), plus in-process
checks of what is hard to provoke from outside (timeouts, a failing batch, the body limit, MMI)."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import openai
import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from lsp_model.chat import clean_hypothesis, history_context
from lsp_model.checkpoint import load_model
from lsp_model.generate import generate, make_gen_config
from lsp_model.mmi import rerank_batch
from lsp_model.tokenizer import decode, encode, eos_id, load_tokenizer
from lsp_serve.app import complete, create_app
from lsp_serve.batcher import Batcher, QueueFull
from lsp_model.decoding import Reranker
from lsp_serve.engine import MMI, Engine, token_pieces
from lsp_serve.launch import Server
from lsp_serve.protocol import APIError, parse_request

KEY = "sekret-key"
ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def server(tiny_dialogue_models):
    args = ["--model", str(tiny_dialogue_models["forward"]), "--api-key", KEY, "--max_queue", "8",
            "--batch_wait_ms", "30", "--timeout", "60", "--log_level", "warning"]
    with Server(args, env=ENV) as s:
        yield s


@pytest.fixture(scope="module")
def local(tiny_dialogue_models):
    d = tiny_dialogue_models["forward"]
    tok = load_tokenizer(d)
    return {"model": load_model(d).eval(), "tok": tok, "eos": eos_id(tok), "pairs": tiny_dialogue_models["pairs"],
            "reverse": load_model(tiny_dialogue_models["reverse"]).eval()}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def post(server, body, key=KEY, **kw):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=60, **kw)


# ---------------------------------------------------------------------------------------------
# the openai client


def test_openai_client_plain_reply_is_the_models_greedy_reply(client, local):
    assert [m.id for m in client.models.list().data] == ["forward"]
    text = local["pairs"][0][0][0]
    r = client.chat.completions.create(model="forward", messages=[{"role": "user", "content": text}],
                                       temperature=0, max_tokens=20)
    ctx = encode(local["tok"], text) + [local["eos"]]
    want = generate(local["model"], [ctx], make_gen_config("greedy", max_new_tokens=20), local["eos"])[0][0]
    assert r.choices[0].message.content == clean_hypothesis(decode(local["tok"], want["ids"]))
    assert r.choices[0].message.role == "assistant" and r.object == "chat.completion"
    assert r.choices[0].finish_reason == ("stop" if want["finished"] else "length")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (len(ctx), len(want["ids"]))
    assert r.usage.total_tokens == len(ctx) + len(want["ids"])


def test_openai_client_stream_joins_to_the_plain_reply(client, local):
    msgs = [{"role": "system", "content": "ignored"}, {"role": "user", "content": local["pairs"][3][0][0]}]
    plain = client.chat.completions.create(model="forward", messages=msgs, seed=5, temperature=0.9, max_tokens=30)
    chunks = list(client.chat.completions.create(model="forward", messages=msgs, seed=5, temperature=0.9,
                                                 max_tokens=30, stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 2, chunks
    assert "".join(deltas) == plain.choices[0].message.content != ""
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_history_is_trimmed_to_the_budget_and_n_and_stop(client, local):
    tok, eos = local["tok"], local["eos"]
    turns = [t for ctx, resp in local["pairs"][:30] for t in ctx + [resp]][:41]
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    r = client.chat.completions.create(model="forward", messages=msgs, max_tokens=40, n=3, seed=1)
    ids, dropped = history_context([encode(tok, t) for t in turns], eos, 128 - 40)
    assert dropped > 0 and r.usage.prompt_tokens == len(ids) <= 88
    assert len(r.choices) == 3 and [c.index for c in r.choices] == [0, 1, 2]
    first = r.choices[0].message.content
    word = first.split()[-1] if first.split() else first
    cut = client.chat.completions.create(model="forward", messages=msgs, max_tokens=40, n=3, seed=1, stop=[word])
    assert cut.choices[0].message.content == first[:first.find(word)].rstrip()
    assert cut.choices[0].finish_reason == "stop"


# ---------------------------------------------------------------------------------------------
# errors and the API key


@pytest.mark.parametrize("body,status,param,words", [
    (b'{"messages": [', 400, None, "not valid JSON"),
    (b'[1, 2]', 400, None, "JSON object"),
    ({"messages": []}, 400, "messages", "at least 1"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 400, "temperature", "valid number"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2.5}, 400, "n", "valid integer"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, 400, "stream", "boolean"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages.0.role", "'user'"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "messages.0.content", "text"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "at most 4"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_p": 0}, 400, "top_p", "greater than 0"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 500}, 400, "max_tokens", "128 positions"),
    ({"messages": [{"role": "user", "content": "hi " * 200}]}, 400, "messages", "shorten it"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, 400, "messages",
     "from the user"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2, "temperature": 0}, 400, "n", "greedy"),
    ({"messages": [{"role": "user", "content": "hi"}], "logprobs": True}, 400, "logprobs", "not supported"),
    ({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4"}, 404, "model", "not found"),
])
def test_bad_requests_get_openai_errors(server, body, status, param, words):
    if isinstance(body, bytes):
        r = httpx.post(server.url + "/v1/chat/completions", content=body, timeout=30,
                       headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    else:
        r = post(server, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"], err
    assert err["type"] == "invalid_request_error"


def test_the_openai_client_raises_the_servers_message(client):
    with pytest.raises(openai.BadRequestError, match="max_tokens 999 is beyond the model"):
        client.chat.completions.create(model="forward", messages=[{"role": "user", "content": "hi"}], max_tokens=999)
    with pytest.raises(openai.NotFoundError, match="no route"):
        client.completions.create(model="forward", prompt="hi")


def test_api_key(server):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    for key in (None, "wrong"):
        r = post(server, body, key=key)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.url + "/v1/models", timeout=30).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    assert post(server, body).status_code == 200
    assert httpx.get(server.url + "/health", timeout=30).json()["auth"] is True   # health stays open


# ---------------------------------------------------------------------------------------------
# batching and load


def test_replies_do_not_depend_on_the_batch(server, local):
    bodies = [{"messages": [{"role": "user", "content": ctx[0]}], "seed": 100 + i, "max_tokens": 25}
              for i, (ctx, _) in enumerate(local["pairs"][10:18])]
    alone = [post(server, b).json()["choices"][0]["message"]["content"] for b in bodies]
    before = httpx.get(server.url + "/health", timeout=30).json()
    gate = threading.Barrier(len(bodies))

    def together(b):
        gate.wait()
        return post(server, b).json()["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(len(bodies)) as ex:
        batched = list(ex.map(together, bodies))
    after = httpx.get(server.url + "/health", timeout=30).json()
    assert batched == alone
    assert after["requests"] - before["requests"] == len(bodies)
    assert after["batches"] - before["batches"] < len(bodies)    # some really shared a generate call
    assert len(set(alone)) > 1


def test_load_64_clients_every_request_answered_or_refused(server, local):
    body = {"messages": [{"role": "user", "content": local["pairs"][0][0][0]}], "seed": 9, "max_tokens": 20}
    reference = post(server, body).json()["choices"][0]["message"]["content"]
    stop_at = time.monotonic() + 3.0     # 64 clients, each sending again as soon as it is answered
    results: list[list] = [[] for _ in range(64)]

    def client_loop(c, i):
        while time.monotonic() < stop_at:
            t = time.monotonic()
            try:
                r = c.post(server.url + "/v1/chat/completions", json=body | {"seed": i})
                results[i].append((r.status_code, time.monotonic() - t, r.json()))
            except Exception as e:  # a hang (timeout) or a dropped connection
                results[i].append((type(e).__name__, time.monotonic() - t, None))

    c = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {KEY}"}, limits=httpx.Limits(max_connections=64))
    threads = [threading.Thread(target=client_loop, args=(c, i)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    c.close()
    assert not any(t.is_alive() for t in threads)
    flat = [r for rs in results for r in rs]
    codes = [r[0] for r in flat]
    assert set(codes) <= {200, 429, 503}, [c for c in codes if c not in (200, 429, 503)][:5]
    assert all(rs for rs in results)                          # every client was answered at least once
    assert codes.count(200) >= 8 and codes.count(429) >= 1, (codes.count(200), codes.count(429))
    assert all(r[2]["choices"][0]["message"]["content"] for r in flat if r[0] == 200)
    assert all(r[2]["error"]["code"] == "queue_full" for r in flat if r[0] == 429)
    # the server is unharmed: same reply for the same request, empty queue
    assert post(server, body).json()["choices"][0]["message"]["content"] == reference
    health = httpx.get(server.url + "/health", timeout=30).json()
    assert health["queued"] == 0 and health["refused"] >= codes.count(429)


# ---------------------------------------------------------------------------------------------
# in process: what is hard to provoke from outside


def test_token_pieces_join_to_the_text():
    tok = load_tokenizer()
    for text in ["hello there , how are you ?", "caf\u00e9 \U0001f600 ok", "a"]:
        ids = encode(tok, text)
        pieces = token_pieces(tok, ids, clean_hypothesis(decode(tok, ids)))
        assert "".join(pieces) == text and all(pieces)
        assert len(pieces) >= min(3, len(text.split()))


def test_parse_request_accepts_text_parts_and_a_single_stop():
    req = parse_request(b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},'
                        b' {"type": "text", "text": "b"}]}], "stop": "x", "user": "ignored"}')
    assert req.messages[0].content == "a b" and req.stop == ["x"]
    with pytest.raises(APIError, match="line 1 column 2"):
        parse_request(b"{")


def test_batcher_refuses_at_once_when_full_and_skips_abandoned_requests():
    release, seen = threading.Event(), []

    def run(payloads):
        seen.append(payloads)
        release.wait(5)
        if "boom" in payloads:
            raise RuntimeError("boom")
        return [p * 2 for p in payloads]

    async def main():
        b = Batcher(run, max_batch=2, wait_s=0.0, max_queue=3)
        b.start()
        first = b.submit("k", "a")
        await asyncio.sleep(0.2)                  # "a" is running, the worker blocked
        waiting = [b.submit("k", x) for x in ("b", "c", "d")]
        t = time.monotonic()
        with pytest.raises(QueueFull):
            b.submit("k", "e")
        assert time.monotonic() - t < 0.05
        waiting[0].cancel()                       # an abandoned request never runs
        release.set()
        assert await first == "aa"
        assert await asyncio.gather(*waiting[1:]) == ["cc", "dd"]
        with pytest.raises(RuntimeError, match="boom"):
            await b.submit("k", "boom")
        assert await b.submit("k", "f") == "ff"   # the worker survived
        b.stop()
        return seen

    seen = asyncio.run(main())
    assert ["b"] not in seen and "b" not in sum(seen, [])


def test_a_client_that_hangs_up_is_cancelled_before_it_runs():
    release, seen = threading.Event(), []

    def run(payloads):
        seen.extend(payloads)
        release.wait(5)
        return payloads

    async def disconnect():
        return {"type": "http.disconnect"}

    async def main():
        b = Batcher(run, max_batch=1, wait_s=0.0, max_queue=4)
        b.start()
        first = b.submit("k", "blocker")
        await asyncio.sleep(0.2)
        gone = SimpleNamespace(key=lambda: "k")
        with pytest.raises(APIError) as e:
            await complete(Request({"type": "http"}, disconnect), b, gone, 30)
        assert e.value.status == 499
        release.set()
        assert await first == "blocker" and await b.submit("k", "after") == "after"
        b.stop()

    asyncio.run(main())
    assert seen == ["blocker", "after"]


def _app(local, run=None, **kw):
    engine = Engine(local["model"], local["tok"], local["eos"], local["tok"].get_vocab_size(),
                    make_gen_config("nucleus", max_new_tokens=20), mmi=kw.pop("mmi", None))
    return TestClient(create_app(engine, Batcher(run or engine.run, 8, 0.001, 8), "tiny", **kw)), engine


def test_timeout_and_failing_batch_leave_the_server_working(local):
    def run(jobs):
        if jobs[0].seed == 13:
            raise RuntimeError("model exploded")
        if jobs[0].seed == 14:
            time.sleep(1.0)
        return engine.run(jobs)

    tc, engine = _app(local, run, timeout_s=0.5)
    body = {"messages": [{"role": "user", "content": "hi"}]}
    with tc:
        r = tc.post("/v1/chat/completions", json=body | {"seed": 13})
        assert r.status_code == 500 and "model exploded" in r.json()["error"]["message"]
        t = time.monotonic()
        r = tc.post("/v1/chat/completions", json=body | {"seed": 14})
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout" and time.monotonic() - t < 0.9
        time.sleep(0.7)
        assert tc.post("/v1/chat/completions", json=body | {"seed": 1}).status_code == 200


def test_body_limit_and_the_page(local):
    tc, _ = _app(local, max_body=2000)
    with tc:
        r = tc.post("/v1/chat/completions", content=b'{"messages": "' + b"x" * 5000 + b'"}')
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        page = tc.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for path in ("/", "/static/app.js", "/static/style.css"):   # no CDN: nothing loaded from elsewhere
            r = tc.get(path)
            assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text, path


def test_mmi_reranks_the_candidates(local):
    mmi = MMI(Reranker(local["reverse"], local["eos"], None), num_candidates=4)
    tc, engine = _app(local, mmi=mmi)
    body = {"messages": [{"role": "user", "content": local["pairs"][5][0][0]}], "seed": 3, "n": 2}
    with tc:
        r = tc.post("/v1/chat/completions", json=body)
        assert r.status_code == 200 and len(r.json()["choices"]) == 2
        assert "more than the 4 MMI candidates" in tc.post("/v1/chat/completions", json=body | {"n": 5}).text
    job = engine.prepare(parse_request(json.dumps(body).encode()))
    assert job.cfg.num_return_sequences == 4 and job.n == 2
    cands = generate(local["model"], [job.context], job.cfg, local["eos"], indices=[3])
    best = rerank_batch(local["reverse"], [job.turns], cands, local["eos"])[0][:2]
    assert [c["message"]["content"] for c in r.json()["choices"]] == [
        clean_hypothesis(decode(local["tok"], h["ids"])) for h in best]
