"""Decoding: processors, batching, every strategy on a tiny model trained on real dialogue, and
the decode.py CLI (formats, order, truncation, vocabulary mismatch, SIGINT)."""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lsp_data.contexts import detect_format, read_contexts, strip_weight
from lsp_model.chat import clean_hypothesis, encode_context, fit_context
from lsp_model.checkpoint import load_model
from lsp_model.generate import (GenConfig, banned_ngram_mask, batch_order, generate, left_pad, make_gen_config,
                                positions_from_mask, sample, sampling_filter)
from lsp_model.generate import _draw
from lsp_model.model import lm_loss
from lsp_model.tokenizer import decode, encode, eos_id, load_tokenizer, save_tokenizer

import decode as decode_cli

REPO = Path(__file__).resolve().parents[1]
ONE_THREAD = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# ---------------------------------------------------------------------------------------------
# pieces without a model


def test_left_pad_positions_count_real_tokens_only():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions_from_mask(mask).tolist() == [[0, 1, 2], [0, 0, 0]]


def test_sampling_filter_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda x: torch.isfinite(x).squeeze(0).tolist()  # noqa: E731
    assert kept(sampling_filter(logits, 1.0, 2, 1.0)) == [True, True, False, False]
    assert kept(sampling_filter(logits, 1.0, 0, 0.8)) == [True, True, False, False]   # 0.5+0.3 reaches 0.8
    assert kept(sampling_filter(logits, 1.0, 0, 0.81)) == [True, True, True, False]
    assert kept(sampling_filter(logits, 1.0, 0, 0.1)) == [True, False, False, False]  # the top token always stays


def test_top_k_sample_draws_as_the_full_vocabulary_filter_does():
    """The fast top-k draw (k tokens only) picks what filter + full-vocabulary draw picks, with the
    same random numbers: mixed k per row, temperatures, banned (-inf) tokens, ties at the k-th value
    (every tied token stays), and top-p or k = 0 rows (the full path)."""
    g = torch.Generator().manual_seed(0)
    for trial in range(40):
        n, V = 6, 500
        logits = torch.randn((n, V), generator=g) * 3
        logits[0, :50] = float("-inf")
        if trial % 4 == 1:
            logits[1, logits[1].topk(3).indices] = logits[1].max()   # a tie at the top: k=2 keeps all 3
        ks = [int(k) for k in torch.randint(1, 40, (n,), generator=g)]
        if trial % 4 == 1:
            ks[1] = 2
        temps = [0.7, 1.0, 1.3, 1.0, 0.9, 1.1]
        ps = [0.9] + [1.0] * (n - 1) if trial % 4 == 2 else [1.0] * n
        if trial % 4 == 3:
            ks[2] = 0
        gens = lambda: [torch.Generator().manual_seed(trial * 10 + i) for i in range(n)]  # noqa: E731
        want = _draw(sampling_filter(logits, temps, ks, ps), gens())
        assert sample(logits, temps, ks, ps, gens()).tolist() == want.tolist()


def test_no_repeat_ngram_mask():
    gen = torch.tensor([[1, 2, 3, 1, 2], [4, 4, 4, 4, 5]])
    banned = banned_ngram_mask(gen, 3, 10)
    assert banned[0].nonzero().flatten().tolist() == [3]      # "1 2" was followed by 3
    assert banned[1].nonzero().flatten().tolist() == []
    assert banned_ngram_mask(gen, 2, 10)[1].nonzero().flatten().tolist() == []  # "5 ?" never seen


def test_batch_order_covers_every_context_once():
    lengths = [5, 1, 9, 3, 3, 7, 2]
    batches = batch_order(lengths, 2, window=2)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(len(b) <= 2 for b in batches)
    assert batches[0] == [1, 3]  # the first window (0..3) sorted by length


def test_presets_and_overrides():
    cfg = make_gen_config("dstc_beam")
    assert cfg.num_beams == 10 and not cfg.do_sample
    assert make_gen_config("dstc_beam", num_beams=4, max_new_tokens=None).num_beams == 4
    assert make_gen_config("topk").top_k == 10
    with pytest.raises(ValueError, match="unknown preset"):
        make_gen_config("nope")
    with pytest.raises(ValueError, match="top_p"):
        make_gen_config(top_p=0.0)
    with pytest.raises(ValueError, match="beam sampling"):
        make_gen_config(num_beams=2, do_sample=True)


def test_strip_weight_like_prepro():
    assert strip_weight("1.0 hello there") == "hello there"
    assert strip_weight("0.0 hi") == "hi"
    assert strip_weight("hello there") == "hello there"
    assert strip_weight("2 of my friends") == "of my friends"   # prepro's quirk: a bare number is a weight
    assert strip_weight("100% agree") == "100% agree"
    assert strip_weight("1.0") == ""


def test_read_contexts_formats(tmp_path):
    tsv = tmp_path / "a.tsv"
    tsv.write_text("0.0 hi there EOS 1.0 how are you\t1.0 fine\n\n1.0 ok\r\n")
    ctx, fmt = read_contexts(tsv)
    assert fmt == "tsv" and [c.turns for c in ctx] == [["hi there", "how are you"], [""], ["ok"]]
    dstc = tmp_path / "b.txt"
    dstc.write_text("k2\tsecond EOS turn\nk1\tfirst\n")
    ctx, fmt = read_contexts(dstc)
    assert fmt == "dstc" and [(c.key, c.turns) for c in ctx] == [("k2", ["second", "turn"]), ("k1", ["first"])]
    assert detect_format(["just one column"]) == "tsv"
    bad = tmp_path / "c.txt"
    bad.write_text("k1\tok\nno key here\n")
    with pytest.raises(ValueError, match=r"c\.txt:2: expected"):
        read_contexts(bad, "dstc")


def test_clean_hypothesis_one_line():
    assert clean_hypothesis("a\nb\tc\r\nd ") == "a b c  d"
    assert clean_hypothesis("") == ""


def test_encode_context_and_fit():
    tok = load_tokenizer()
    ids = encode_context(tok, ["Hello", "how are you?"], 50256)
    assert ids == encode(tok, "Hello") + [50256] + encode(tok, "how are you?") + [50256]
    assert encode_context(tok, [""], 50256) == [50256]
    assert fit_context(ids, 3) == (ids[-3:], True) and fit_context(ids, 99) == (ids, False)


# ---------------------------------------------------------------------------------------------
# the tiny model trained on real dialogue


@pytest.fixture(scope="module")
def tiny(tiny_dialogue_models):
    path = tiny_dialogue_models["forward"]
    model = load_model(path).eval()
    tok = load_tokenizer(path)
    pairs = tiny_dialogue_models["pairs"]
    eos = eos_id(tok)
    ctxs = [encode_context(tok, c, eos) for c, _ in pairs[:16]]
    return dict(model=model, tok=tok, eos=eos, pairs=pairs, ctxs=ctxs, path=path)


def test_greedy_reproduces_training_replies(tiny):
    m, tok, eos, pairs = tiny["model"], tiny["tok"], tiny["eos"], tiny["pairs"]
    out = generate(m, tiny["ctxs"], make_gen_config("greedy", max_new_tokens=30), eos)
    texts = [decode(tok, h[0]["ids"]).strip() for h in out]
    exact = sum(t == r for t, (_, r) in zip(texts, pairs))
    words = {w for c, r in pairs for t in c + [r] for w in t.split()}
    out_words = [w for t in texts for w in t.split()]
    assert exact >= 1, texts                           # memorised replies come back verbatim
    assert sum(w in words for w in out_words) >= 0.7 * len(out_words), texts
    assert all(h[0]["ids"] for h in out)               # min_new_tokens 1: never an empty reply


@pytest.mark.parametrize("preset,extra", [("greedy", {}), ("dstc_beam", {"num_beams": 4}),
                                          ("greedy", {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2}),
                                          ("topk", {})])
def test_batched_equals_unbatched(tiny, preset, extra):
    cfg = make_gen_config(preset, max_new_tokens=20, **extra)
    ctxs = tiny["ctxs"]
    batched = generate(tiny["model"], ctxs, cfg, tiny["eos"])
    for i, c in enumerate(ctxs):
        alone = generate(tiny["model"], [c], cfg, tiny["eos"], indices=[i])
        assert alone[0][0]["ids"] == batched[i][0]["ids"], (preset, i)


def test_reported_logprob_matches_a_full_forward(tiny):
    """The KV-cache loop's log P(reply + EOS | context) equals the training loss on ctx + reply."""
    m, eos = tiny["model"], tiny["eos"]
    out = generate(m, tiny["ctxs"][:4], make_gen_config("greedy", max_new_tokens=30), eos)
    for c, h in zip(tiny["ctxs"], out):
        h = h[0]
        assert h["finished"]
        seq = c + h["ids"] + [eos]
        labels = [-1] * (len(c) - 1) + h["ids"] + [eos]
        logits = m(input_ids=torch.tensor([seq[:-1]]), attention_mask=torch.ones(1, len(seq) - 1, dtype=torch.long)).logits
        loss, _ = lm_loss(logits, torch.tensor([labels]))
        assert h["logprob"] == pytest.approx(-loss.item() * (len(h["ids"]) + 1), abs=1e-3)


def test_beam_finds_higher_logprob_than_greedy(tiny):
    ctxs = [encode_context(tiny["tok"], c, tiny["eos"]) for c, _ in tiny["pairs"][40:72]]
    greedy = generate(tiny["model"], ctxs, make_gen_config("greedy", max_new_tokens=30), tiny["eos"])
    beam = generate(tiny["model"], ctxs, make_gen_config("dstc_beam", max_new_tokens=30, length_penalty=0.0), tiny["eos"])
    g = sum(h[0]["logprob"] for h in greedy) / len(ctxs)
    b = sum(h[0]["logprob"] for h in beam) / len(ctxs)
    assert b > g
    assert all(h[0]["logprob"] >= gh[0]["logprob"] - 1e-4 for h, gh in zip(beam, greedy) if gh[0]["finished"])


def test_beam_returns_sorted_distinct_hypotheses(tiny):
    out = generate(tiny["model"], tiny["ctxs"][:3], make_gen_config("dstc_beam", num_beams=5, num_return_sequences=5,
                                                                      max_new_tokens=20), tiny["eos"])
    for hs in out:
        assert len(hs) == 5
        assert [h["score"] for h in hs] == sorted((h["score"] for h in hs), reverse=True)
        assert len({tuple(h["ids"]) for h in hs}) == 5


def test_sampling_is_reproducible_and_seeded(tiny):
    cfg = make_gen_config("topk", max_new_tokens=20, num_return_sequences=3)
    a = generate(tiny["model"], tiny["ctxs"][:4], cfg, tiny["eos"])
    b = generate(tiny["model"], tiny["ctxs"][:4], cfg, tiny["eos"])
    c = generate(tiny["model"], tiny["ctxs"][:4], make_gen_config("topk", max_new_tokens=20, num_return_sequences=3,
                                                                   seed=7), tiny["eos"])
    ids = lambda out: [[h["ids"] for h in hs] for hs in out]  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)
    # top_k 1 (or a tiny top_p) is greedy
    greedy = generate(tiny["model"], tiny["ctxs"][:4], make_gen_config("greedy", max_new_tokens=20), tiny["eos"])
    k1 = generate(tiny["model"], tiny["ctxs"][:4], make_gen_config("topk", top_k=1, max_new_tokens=20), tiny["eos"])
    p0 = generate(tiny["model"], tiny["ctxs"][:4], make_gen_config("nucleus", top_p=1e-6, no_repeat_ngram_size=0,
                                                                    max_new_tokens=20), tiny["eos"])
    assert ids(k1) == ids(greedy) == ids(p0)


def test_length_and_repetition_controls(tiny):
    m, eos, ctxs = tiny["model"], tiny["eos"], tiny["ctxs"]
    out = generate(m, ctxs, make_gen_config("greedy", min_new_tokens=12, max_new_tokens=15), eos)
    assert all(12 <= len(h[0]["ids"]) <= 15 and eos not in h[0]["ids"] for h in out)
    short = generate(m, ctxs, make_gen_config("greedy", max_new_tokens=3), eos)
    assert all(len(h[0]["ids"]) <= 3 for h in short)

    def repeats(out, n):
        return sum(len(x) - len(set(x)) for h in out for x in [list(zip(*[h[0]["ids"][i:] for i in range(n)]))])

    plain = generate(m, ctxs, make_gen_config("greedy", min_new_tokens=25, max_new_tokens=25), eos)
    blocked = generate(m, ctxs, make_gen_config("greedy", min_new_tokens=25, max_new_tokens=25, no_repeat_ngram_size=2), eos)
    penal = generate(m, ctxs, make_gen_config("greedy", min_new_tokens=25, max_new_tokens=25, repetition_penalty=2.0), eos)
    assert repeats(plain, 2) > 0 and repeats(blocked, 2) == 0
    assert repeats(penal, 1) < repeats(plain, 1)


def test_context_longer_than_positions_is_an_error_in_the_core(tiny):
    with pytest.raises(ValueError, match="truncate"):
        generate(tiny["model"], [[5] * 200], GenConfig(max_new_tokens=4), tiny["eos"])


# ---------------------------------------------------------------------------------------------
# the CLI


class Result:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


def run_decode(capsys, *args):
    """decode.py's main in-process (a subprocess would pay the torch import every time)."""
    capsys.readouterr()
    rc = decode_cli.main([*map(str, args), "--quiet"])
    return Result(rc, capsys.readouterr().err)


def test_cli_tsv_keeps_every_line_in_order(tiny, tmp_path, capsys):
    pairs = tiny["pairs"]
    long_ctx = " EOS ".join(c[0] for c, _ in pairs[:30])            # far over n_positions
    lines = [f"0.0 {pairs[0][0][0]}\t1.0 {pairs[0][1]}", "", f"1.0 {long_ctx}\t1.0 x", f"1.0 {pairs[1][0][0]}",
             f"{long_ctx}"]
    inp = tmp_path / "in.tsv"
    inp.write_text("\n".join(lines) + "\n")
    out, js = tmp_path / "hyp.txt", tmp_path / "hyp.jsonl"
    r = run_decode(capsys, "--model", tiny["path"], "--input", inp, "--output", out, "--jsonl", js, "--batch_size", 2,
                   "--max_new_tokens", 20)
    assert r.returncode == 0, r.stderr
    hyps = out.read_text().split("\n")
    assert hyps[-1] == "" and len(hyps) - 1 == len(lines)
    assert all(h.strip() for h in hyps[:-1])                           # min_new_tokens 1: nothing empty
    assert r.stderr.count("cut from the left (further cuts are counted)") == 1
    assert "2 of 5 contexts were cut" in r.stderr
    rows = [json.loads(x) for x in js.read_text().splitlines()]
    assert [x["line"] for x in rows] == [1, 2, 3, 4, 5]
    assert [x["context_cut"] for x in rows] == [False, False, True, False, True]
    assert rows[1]["context"] == [""]
    # decoding a single context alone gives the same reply (batching and order do not matter)
    one = tmp_path / "one.tsv"
    one.write_text(lines[3] + "\n")
    r = run_decode(capsys, "--model", tiny["path"], "--input", one, "--output", tmp_path / "one.txt", "--max_new_tokens", 20)
    assert (tmp_path / "one.txt").read_text() == hyps[3] + "\n"


def test_cli_dstc_sort_keys_and_presets(tiny, tmp_path, capsys):
    pairs = tiny["pairs"]
    keys = ["c3", "a1", "b2"]
    inp = tmp_path / "ctx.txt"
    inp.write_text("".join(f"{k}\t{' EOS '.join(c)}\n" for k, (c, _) in zip(keys, pairs)))
    unsorted, srt = tmp_path / "u.txt", tmp_path / "s.txt"
    for preset in ("dstc_beam", "topk"):
        assert run_decode(capsys, "--model", tiny["path"], "--input", inp, "--output", unsorted, "--preset", preset,
                          "--max_new_tokens", 15).returncode == 0
        r = run_decode(capsys, "--model", tiny["path"], "--input", inp, "--output", srt, "--preset", preset, "--sort_keys",
                       "--max_new_tokens", 15)
        assert r.returncode == 0, r.stderr
        u, s = unsorted.read_text().splitlines(), srt.read_text().splitlines()
        assert s == [u[keys.index(k)] for k in sorted(keys)]
    r = run_decode(capsys, "--model", tiny["path"], "--input", inp, "--output", srt, "--input_format", "tsv", "--sort_keys")
    assert r.returncode == 2 and "--sort_keys needs keys" in r.stderr


def test_cli_vocab_mismatch_is_a_clear_error(tiny, tmp_path, capsys):
    gpt2 = tmp_path / "gpt2tok"
    save_tokenizer(load_tokenizer(), gpt2)
    inp = tmp_path / "in.tsv"
    inp.write_text("hello\n")
    r = run_decode(capsys, "--model", tiny["path"], "--tokenizer", gpt2, "--input", inp, "--output", tmp_path / "o.txt")
    assert r.returncode == 2
    assert "50257 tokens" in r.stderr and "600" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.txt").exists()


def test_cli_bad_input_names_file_and_line(tiny, tmp_path, capsys):
    inp = tmp_path / "bad.txt"
    inp.write_text("k1\thello\nnot a keyed line\n")
    r = run_decode(capsys, "--model", tiny["path"], "--input", inp, "--output", tmp_path / "o.txt", "--input_format", "dstc")
    assert r.returncode == 2 and "bad.txt:2:" in r.stderr and "Traceback" not in r.stderr
    r = run_decode(capsys, "--model", tmp_path / "missing", "--input", inp, "--output", tmp_path / "o.txt")
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr


def test_cli_sigint_writes_finished_prefix(tiny, tmp_path):
    n = 60
    inp = tmp_path / "in.tsv"
    inp.write_text("".join(f"{c[0]}\n" for c, _ in (tiny["pairs"] * 2)[:n]))
    out, js = tmp_path / "hyp.txt", tmp_path / "hyp.jsonl"
    proc = subprocess.Popen([sys.executable, "decode.py", "--model", str(tiny["path"]), "--input", str(inp),
                             "--output", str(out), "--jsonl", str(js), "--batch_size", "1",
                             "--min_new_tokens", "60", "--max_new_tokens", "60"],
                            cwd=REPO, stderr=subprocess.PIPE, env=ONE_THREAD)
    err, deadline, fd = b"", time.monotonic() + 120, proc.stderr.fileno()
    while time.monotonic() < deadline and proc.poll() is None:   # until tqdm shows 2 finished contexts
        if select.select([fd], [], [], 0.1)[0]:
            err += os.read(fd, 65536)
        done = [int(m) for m in re.findall(rb"\| *(\d+)/%d" % n, err)]
        if done and max(done) >= 2:
            break
    proc.send_signal(signal.SIGINT)
    err = (err + proc.stderr.read()).decode()
    assert proc.wait(timeout=60) == 130, err
    m = re.search(r"interrupted: (\d+) of %d contexts finished; wrote the first (\d+) hypotheses" % n, err)
    assert m, err
    finished, written = int(m.group(1)), int(m.group(2))
    assert 2 <= written == finished < n        # batch size 1 decodes in input order
    assert len(out.read_text().splitlines()) == written
    assert len(js.read_text().splitlines()) == finished
