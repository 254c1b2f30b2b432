"""--ranker in decode.py, interact.py and serve.py (lsp_rank.rerank): the best candidate by the
ranker, its scores equal to rank.py's on the printed text, and the rule combining it with the
generator's or MMI's per-token probability."""
from __future__ import annotations

import io
import json
import math

import pytest

import decode as decode_cli
from lsp_model.decoding import Reranker
from lsp_model.checkpoint import load_model
from lsp_model.tokenizer import encode, eos_id, load_tokenizer
from lsp_rank.ranker import load_ranker
from lsp_rank.rerank import RankerReranker


@pytest.fixture(scope="module")
def setup(tiny_dialogue_models, dialogrpt_dir):
    d = tiny_dialogue_models
    tok = load_tokenizer(d["forward"])
    return dict(fpath=d["forward"], rpath=d["reverse"], pairs=d["pairs"], tok=tok, eos=eos_id(tok),
                rev=load_model(d["reverse"]).eval(), ranker=load_ranker(dialogrpt_dir / "updown.pth"),
                ens=dialogrpt_dir / "ensemble.yml", pth=dialogrpt_dir / "updown.pth")


def run_decode(setup, tmp_path, capsys, *extra, n=4):
    inp = tmp_path / "ctx.tsv"
    inp.write_text("".join(f"{c[0]} EOS {c[-1]}\n" for c, _ in setup["pairs"][:5]))
    out, js = tmp_path / "hyp.txt", tmp_path / "hyp.jsonl"
    rc = decode_cli.main(["--model", str(setup["fpath"]), "--input", str(inp), "--output", str(out), "--jsonl",
                          str(js), "--preset", "topk", "--num_candidates", str(n), "--min_new_tokens", "2",
                          "--max_new_tokens", "8", "--quiet", *extra])
    assert rc == 0, capsys.readouterr().err
    return [json.loads(x) for x in js.read_text().splitlines()], out.read_text().splitlines()


def test_decode_picks_the_rankers_best(setup, tmp_path, capsys):
    rows, hyps = run_decode(setup, tmp_path, capsys, "--ranker", str(setup["pth"]))
    for r, h in zip(rows, hyps):
        cands = r["candidates"]
        assert len(cands) == 4 and r["hypothesis"] == h == cands[0]["text"]
        scores = [c["ranker_score"] for c in cands]
        assert scores == sorted(scores, reverse=True) and [c["rank_score"] for c in cands] == scores
        # the same numbers as rank.py on the printed text and the context's turns
        want = setup["ranker"].score([r["context"]], [[c["text"] for c in cands]])[0]["final"]
        assert max(abs(a - b) for a, b in zip(scores, want)) < 1e-5
        assert r["ranker_score"] == scores[0]


def test_decode_ensemble_writes_every_members_score(setup, tmp_path, capsys):
    rows, _ = run_decode(setup, tmp_path, capsys, "--ranker", str(setup["ens"]), n=2)
    c = rows[0]["candidates"][0]
    assert list(c["ranker_scores"]) == ["human_vs_rand", "human_vs_machine", "updown", "depth", "width", "final"]
    assert c["ranker_scores"]["final"] == c["ranker_score"]


def test_decode_ranker_with_mmi_follows_the_rule(setup, tmp_path, capsys):
    """w=0.5: rank_score = 0.5 ranker + 0.5 exp(mmi_score / source tokens) (mmi_lambda 0)."""
    rows, _ = run_decode(setup, tmp_path, capsys, "--ranker", str(setup["pth"]), "--reverse_model",
                         str(setup["rpath"]), "--ranker_weight", "0.5")
    for r in rows:
        n_src = sum(len(encode(setup["tok"], t)) + 1 for t in r["context"])
        for c in r["candidates"]:
            want = 0.5 * c["ranker_score"] + 0.5 * math.exp(c["reverse_logprob"] / n_src)
            assert c["mmi_score"] == c["reverse_logprob"] and abs(c["rank_score"] - want) < 1e-9
        ranks = [c["rank_score"] for c in r["candidates"]]
        assert ranks == sorted(ranks, reverse=True)


def test_rule_without_mmi_and_weights(setup):
    """The generator's per-token probability exp(logprob / (tokens + EOS)) is mixed in by 1 - w;
    w = 0 ranks by it alone, w = 1 by the ranker alone."""
    tok = setup["tok"]
    ctx = [[encode(tok, "how are you")]]
    hyps = [[{"ids": encode(tok, " fine thanks"), "logprob": -1.0, "finished": True},
             {"ids": encode(tok, " no"), "logprob": -6.0, "finished": True},
             {"ids": encode(tok, " maybe later"), "logprob": -3.0, "finished": False}]]
    r = setup["ranker"]
    for w in (0.0, 0.3, 1.0):
        out = RankerReranker(r, tok, w)(ctx, hyps)[0]
        for h in out:
            n = len(h["ids"]) + (1 if h["finished"] else 0)
            p = math.exp(h["logprob"] / n)
            assert abs(h["rank_score"] - (w * h["ranker_score"] + (1 - w) * p)) < 1e-9
        assert [h["rank_score"] for h in out] == sorted((h["rank_score"] for h in out), reverse=True)
    assert RankerReranker(r, tok, 0.0)(ctx, hyps)[0][0]["logprob"] == -1.0
    with pytest.raises(ValueError, match="ranker_weight"):
        RankerReranker(r, tok, 1.5)


def test_mmi_lambda_reaches_the_inner_reranker(setup):
    rr = RankerReranker(setup["ranker"], setup["tok"], 0.5, Reranker(setup["rev"], setup["eos"], None))
    rr.mmi_lambda = 0.7
    assert rr.mmi.mmi_lambda == 0.7


def test_decode_ranker_needs_candidates(setup, tmp_path, capsys):
    inp = tmp_path / "c.tsv"
    inp.write_text("hello\n")
    rc = decode_cli.main(["--model", str(setup["fpath"]), "--input", str(inp), "--output", str(tmp_path / "o"),
                          "--ranker", str(setup["pth"]), "--quiet"])
    assert rc == 2 and "--ranker needs several candidates" in capsys.readouterr().err


def test_interact_with_ranker(setup, monkeypatch, capsys):
    import interact
    monkeypatch.setattr("sys.stdin", io.StringIO("hello there\nhow are you?\n"))
    rc = interact.main(["--model", str(setup["fpath"]), "--ranker", str(setup["pth"]), "--num_candidates", "3",
                        "--max_new_tokens", "6"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(out) == 2


def test_serve_with_ranker(setup):
    from fastapi.testclient import TestClient

    import serve
    args = serve.parse_args(["--model", str(setup["fpath"]), "--ranker", str(setup["pth"]),
                             "--num_candidates", "3", "--max_new_tokens", "6"])
    app, _ = serve.build(args)
    with TestClient(app, base_url="http://127.0.0.1") as tc:  # the server answers local Host names only
        r = tc.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "n": 2})
    assert r.status_code == 200 and len(r.json()["choices"]) == 2
