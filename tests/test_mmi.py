"""MMI reranking: the reverse input layout (prepro --reverse), a rerank that must change the
forward model's choice, other sizes/tokenizers, and decode.py --reverse_model."""
from __future__ import annotations

import json

import pytest
import torch

import decode as decode_cli
from lsp_model.checkpoint import load_model
from lsp_model.model import build_model, make_config
from lsp_model.mmi import rerank, reverse_example, reverse_logprob
from lsp_model.tokenizer import encode, encode_batch, eos_id, load_tokenizer

E = 50256


def test_reverse_example_is_prepros_reverse_layout():
    # prepro --reverse on "1 2 3 EOS 4 5 <TAB> 6 7 8": turns become [6 7 8], [4 5], [1 2 3]
    x, y = reverse_example([[1, 2, 3], [4, 5]], [6, 7, 8], E, max_len=128)
    assert x == [6, 7, 8, E, 4, 5, E, 1, 2, 3]
    assert y == [-1, -1, -1, 4, 5, E, 1, 2, 3, E]
    # too long: the oldest turns (at the end) go first
    x, y = reverse_example([[1, 2, 3], [4, 5]], [6, 7, 8], E, max_len=6)
    assert x == [6, 7, 8, E, 4, 5] and y == [-1, -1, -1, 4, 5, E]
    x, y = reverse_example([[]], [6], E, max_len=128)       # empty context: P(EOS | cand EOS)
    assert x == [6, E] and y == [-1, E]


def test_reverse_example_matches_golden_reverse_features(golden):
    """Rebuild the original prepro --reverse features from their own turns: same ids, labels."""
    path = golden / "prepro" / "features.128.reverse.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not in this golden set")
    checked = 0
    for line in path.read_text().splitlines():
        f = json.loads(line)
        n = len(f["lm_labels"])
        while n and f["lm_labels"][n - 1] == -1:
            n -= 1
        ids, labels = f["input_ids"][:n], f["lm_labels"][:n]
        turns, cur = [], []
        for t in ids + [E]:
            if t == E:
                turns.append(cur)
                cur = []
            else:
                cur.append(t)
        full = [t for turn in turns for t in turn + [E]]
        if len(turns) < 2 or labels != [-1] * len(turns[0]) + full[len(turns[0]) + 1:]:
            continue  # windows with zero-weight turns: labels are masked, not the MMI case
        x, y = reverse_example(turns[1:][::-1], turns[0], E, max_len=4096)  # windows may exceed 128
        assert (x, y) == (ids, labels)
        checked += 1
    assert checked >= 50


@pytest.fixture(scope="module")
def models(tiny_dialogue_models):
    d = tiny_dialogue_models
    tok = load_tokenizer(d["forward"])
    return dict(fwd=load_model(d["forward"]).eval(), rev=load_model(d["reverse"]).eval(), tok=tok,
                eos=eos_id(tok), pairs=d["pairs"], fpath=d["forward"], rpath=d["reverse"])


def test_mmi_prefers_the_reply_that_explains_the_source(models):
    """For training contexts, let the forward model pick its favourite reply among all training
    replies (a generic 'yep' / 'Hello?' in practice). Between that and the true reply, the
    reverse model must pick the true one: the specific reply explains the source."""
    fwd, rev, tok, eos, pairs = models["fwd"], models["rev"], models["tok"], models["eos"], models["pairs"]
    resp = [encode(tok, r) for _, r in pairs]
    cases = changed = 0
    for i in range(30):
        ctx = encode_batch(tok, pairs[i][0])
        # log P(reply | ctx) with the forward model: the same layout with the roles swapped
        fl = reverse_logprob(fwd, [reverse_example([r], [t for turn in ctx for t in turn], eos, 128) for r in resp], eos)
        g = max((j for j in range(len(resp)) if resp[j] != resp[i]), key=lambda j: fl[j])
        if fl[g] <= fl[i]:
            continue  # the forward model already prefers the true reply: nothing for MMI to change
        cases += 1
        hyps = [{"ids": resp[g], "logprob": fl[g]}, {"ids": resp[i], "logprob": fl[i]}]
        best = rerank(rev, ctx, hyps, eos)
        assert best[0]["mmi_score"] == best[0]["reverse_logprob"]   # lambda 0: the reverse model alone
        changed += best[0]["ids"] == resp[i]
        # a large lambda gives the choice back to the forward model
        assert rerank(rev, ctx, hyps, eos, mmi_lambda=1e6)[0]["ids"] == resp[g]
    assert cases >= 3
    assert changed >= 0.8 * cases, (changed, cases)


def test_rerank_batches_and_other_sizes_and_tokenizers(models, tmp_path):
    tok, eos = models["tok"], models["eos"]
    ctx = encode_batch(tok, ["how are you", "fine and you"])
    hyps = [{"ids": encode(tok, t), "logprob": -1.0} for t in ["good", "not bad at all", "yep"]]
    one = rerank(models["rev"], ctx, hyps, eos, batch_size=32)
    small = rerank(models["rev"], ctx, hyps, eos, batch_size=1)
    assert [h["ids"] for h in one] == [h["ids"] for h in small]
    assert [h["reverse_logprob"] for h in one] == pytest.approx([h["reverse_logprob"] for h in small], abs=1e-4)
    # a reverse model of another size with the GPT-2 vocabulary: ids go through text
    gpt2 = load_tokenizer()
    torch.manual_seed(0)
    other = build_model(make_config(n_layer=1, n_embd=32, n_head=2, n_positions=64)).eval()
    conv = lambda ids: encode_batch(gpt2, [tok.decode(ids)])[0]  # noqa: E731
    out = rerank(other, ctx, hyps, eos_id(gpt2), to_reverse_ids=conv)
    assert len(out) == 3 and all(torch.isfinite(torch.tensor(h["reverse_logprob"])) for h in out)


def test_decode_cli_with_reverse_model(models, tmp_path, capsys):
    pairs = models["pairs"]
    inp = tmp_path / "ctx.tsv"
    inp.write_text("".join(f"{c[0]}\n" for c, _ in pairs[:6]))
    out, js = tmp_path / "hyp.txt", tmp_path / "hyp.jsonl"
    rc = decode_cli.main(["--model", str(models["fpath"]), "--reverse_model", str(models["rpath"]), "--input", str(inp),
                          "--output", str(out), "--jsonl", str(js), "--preset", "topk", "--num_candidates", "8",
                          "--max_new_tokens", "20", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in js.read_text().splitlines()]
    hyps = out.read_text().splitlines()
    assert len(rows) == len(hyps) == 6
    for r, h in zip(rows, hyps):
        assert len(r["candidates"]) == 8
        scores = [c["mmi_score"] for c in r["candidates"]]
        assert scores == sorted(scores, reverse=True) and r["hypothesis"] == h == r["candidates"][0]["text"]
    # MMI picked something other than the forward model's favourite at least once
    assert any(r["candidates"][0]["logprob"] < max(c["logprob"] for c in r["candidates"]) for r in rows)
    rc = decode_cli.main(["--model", str(models["fpath"]), "--reverse_model", str(models["rpath"]), "--input", str(inp),
                          "--output", str(out), "--quiet"])
    assert rc == 2 and "MMI needs several candidates" in capsys.readouterr().err
