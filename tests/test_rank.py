"""DialogRPT rankers (lsp_rank): every golden score of the original code to 1e-5, in every
checkpoint form; batch invariance; clear errors for bad rankers."""
import json

import pytest
import torch

from lsp_model.checkpoint import CheckpointError
from lsp_rank.model import load_head, save_ranker
from lsp_rank.ranker import load_ranker

EOS = "<|endoftext|>"
TOL = 1e-5


@pytest.fixture(scope="module")
def gold(golden):
    return json.loads((golden / "dialogrpt" / "scores.json").read_text())


def scores_of(ranker, cases, max_cxt_turn=None):
    return ranker.score([c["cxt"].split(EOS) for c in cases], [c["hyps"] for c in cases], max_cxt_turn)


def assert_golden(got, cases, names=("final",)):
    assert len(got) == len(cases)
    for g, c in zip(got, cases):
        want = c["scores"] if isinstance(c["scores"], dict) else {"final": c["scores"]}
        assert list(g) == list(want) and set(names) <= set(g)
        for k in want:
            assert len(g[k]) == len(want[k])
            assert max((abs(a - b) for a, b in zip(g[k], want[k])), default=0) < TOL, (c["cxt"], k)


def test_single_pth(dialogrpt_dir, gold):
    r = load_ranker(dialogrpt_dir / "updown.pth")
    assert r.single and next(iter(r.heads.values())).config.n_head == 2
    assert_golden(scores_of(r, gold["single"]), gold["single"])
    assert_golden(scores_of(r, gold["single_max_cxt_turn2"], 2), gold["single_max_cxt_turn2"])


def test_ensemble_yml(dialogrpt_dir, gold):
    r = load_ranker(dialogrpt_dir / "ensemble.yml")
    assert len(r.heads) == 3  # five members over three files: each file loaded once
    assert_golden(scores_of(r, gold["ensemble"]), gold["ensemble"],
                  ("human_vs_rand", "human_vs_machine", "updown", "depth", "width", "final"))


def test_dialogpt_pkl(dialogrpt_dir, gold):
    assert_golden(scores_of(load_ranker(dialogrpt_dir / "dialogpt_tiny.pkl"), gold["dialogpt_pkl"]),
                  gold["dialogpt_pkl"])


def test_transformers_folder(dialogrpt_dir, gold, tmp_path):
    """A GPT2ForSequenceClassification folder (the microsoft/DialogRPT-* layout) built from the
    golden .pth scores the same, through our loader and through transformers' own class."""
    from transformers import AutoModelForSequenceClassification
    save_ranker(load_head(dialogrpt_dir / "updown.pth"), tmp_path / "updown")
    cfg = json.loads((tmp_path / "updown" / "config.json").read_text())
    assert cfg["architectures"] == ["GPT2ForSequenceClassification"] and len(cfg["id2label"]) == 1
    assert cfg["pad_token_id"] == 50256 and cfg["n_head"] == 2
    assert_golden(scores_of(load_ranker(tmp_path / "updown"), gold["single"]), gold["single"])
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "updown").eval()
    ours = load_head(dialogrpt_dir / "updown.pth")
    for k, v in ours.state_dict().items():
        assert torch.equal(hf.state_dict()[k], v), k


def test_bf16_close(dialogrpt_dir, gold):
    r = load_ranker(dialogrpt_dir / "updown.pth", dtype="bf16")
    assert next(iter(r.heads.values())).transformer.wte.weight.dtype == torch.bfloat16
    got = scores_of(r, gold["single"])
    err = max(abs(a - b) for g, c in zip(got, gold["single"]) for a, b in zip(g["final"], c["scores"]))
    assert err < 0.1  # bf16 keeps 8 bits of mantissa: close, not golden


def test_batch_invariant(dialogrpt_dir, gold):
    """A score is the same alone, in one batch of everything, or in batches of 3 (1e-6, fp32)."""
    r = load_ranker(dialogrpt_dir / "ensemble.yml")
    cases = gold["single"]
    ctx, hyps = [c["cxt"].split(EOS) for c in cases], [c["hyps"] for c in cases]
    together = r.score(ctx, hyps)
    r.batch_size = 3
    threes = r.score(ctx, hyps)
    for i, (c, hs) in enumerate(zip(ctx, hyps)):
        for j, h in enumerate(hs):
            alone = r.score([c], [[h]])[0]
            for k in alone:
                assert abs(alone[k][0] - together[i][k][j]) < 1e-6
                assert abs(threes[i][k][j] - together[i][k][j]) < 1e-6


def test_too_long_keeps_right_end(dialogrpt_dir):
    """A sequence longer than n_positions is scored on its last n_positions tokens."""
    r = load_ranker(dialogrpt_dir / "updown.pth")
    long_ctx = ["hello there " * 700, "how are you"]
    got = r.score([long_ctx], [["fine thanks"]])[0]["final"][0]
    from lsp_rank.score import candidate_ids, context_ids
    seq = context_ids(r.tok, long_ctx) + candidate_ids(r.tok, ["fine thanks"])[0]
    assert len(seq) > 1024
    from lsp_rank.score import head_logits
    want = torch.sigmoid(head_logits(next(iter(r.heads.values())), [seq[-1024:]]))[0].item()
    assert abs(got - want) < 1e-6


def test_lm_pth_refused(dialogrpt_dir, tmp_path):
    sd = torch.load(dialogrpt_dir / "dialogpt_tiny.pkl", weights_only=True)
    torch.save(sd, tmp_path / "lm.pth")
    with pytest.raises(CheckpointError, match=r"lm\.pth: no score\.weight"):
        load_ranker(tmp_path / "lm.pth")


def write_yml(path, text):
    path.write_text(text)
    return path


def test_yml_missing_file(dialogrpt_dir, tmp_path):
    y = write_yml(tmp_path / "e.yml", f"cond:\n- name: updown\n  wt: 1\n  path: {dialogrpt_dir}/updown.pth\n"
                                      "- name: gone\n  wt: 1\n  path: nothere.pth\n")
    with pytest.raises(CheckpointError, match=r"e\.yml: cond\[1\] \(gone\): nothere\.pth not found"):
        load_ranker(y)


def test_yml_zero_weights(dialogrpt_dir, tmp_path):
    p = dialogrpt_dir / "updown.pth"
    y = write_yml(tmp_path / "z.yml", f"prior:\n- name: a\n  wt: 0.5\n  path: {p}\n- name: b\n  wt: -0.5\n"
                                      f"  path: {p}\ncond: []\n")
    with pytest.raises(CheckpointError, match=r"z\.yml: the weights of 'prior' sum to 0"):
        load_ranker(y)


def test_yml_empty_group_counts_one(dialogrpt_dir, gold, tmp_path):
    """Only a cond group: final = avg_w(cond) * 1, the weighted mean of its members."""
    y = write_yml(tmp_path / "c.yml", f"cond:\n- name: u\n  wt: 2\n  path: {dialogrpt_dir}/updown.pth\n"
                                      f"- name: d\n  wt: 1\n  path: {dialogrpt_dir}/depth.pth\n")
    got = scores_of(load_ranker(y), gold["ensemble"][:2])
    for g, c in zip(got, gold["ensemble"]):
        for j, f in enumerate(g["final"]):
            assert abs(f - (2 * c["scores"]["updown"][j] + c["scores"]["depth"][j]) / 3) < TOL


def test_shared_context_equals_whole_sequences(dialogrpt_dir):
    """Each context once + candidates on its cache == every (context + candidate) run whole,
    with empty candidates, contexts of different lengths, and one group too long for the model."""
    from lsp_rank.score import group_logits, head_logits
    m = load_head(dialogrpt_dir / "updown.pth")
    g = torch.Generator().manual_seed(0)
    groups = []
    for c_len, n in ((5, 3), (40, 6), (1, 2), (17, 5), (1000, 2)):
        ctx = torch.randint(0, 50257, (c_len,), generator=g).tolist()
        hs = [torch.randint(0, 50257, (int(k),), generator=g).tolist()
              for k in torch.randint(0, 30, (n,), generator=g)] + [[]]
        groups.append((ctx, hs))
    shared = group_logits(m, groups, batch_size=8)
    whole = head_logits(m, [c + h for c, hs in groups for h in hs], batch_size=8)
    assert torch.allclose(torch.sigmoid(shared), torch.sigmoid(whole), atol=1e-6, rtol=0)


def test_gpt2_hidden_pick_matches_transformers():
    """The scoring forward with the last block at one column per row (right-padded rows, causal
    or with a padding mask) gives transformers' hidden state at that column."""
    from transformers import GPT2ForSequenceClassification

    from lsp_model.kv_cache import gpt2_hidden
    from lsp_model.model import make_config
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(make_config(n_layer=2, n_embd=64, n_head=4, n_positions=64,
                                                      num_labels=1, pad_token_id=0)).eval()
    ids = torch.randint(0, 1000, (3, 9))
    lens = torch.tensor([9, 4, 1])
    pos = torch.arange(9).expand_as(ids)
    valid = pos < lens[:, None]
    with torch.no_grad():
        want = model.transformer(input_ids=ids, attention_mask=valid.long()).last_hidden_state
        want = want[torch.arange(3), lens - 1]

        def keep(layer, k, v):
            return k, v
        mask = torch.ones(9, 9, dtype=torch.bool).tril() & valid[:, None, None, :]
        for m in (None, mask):
            got = model.transformer.ln_f(gpt2_hidden(model, ids, pos, keep, m, lens - 1)[:, 0])
            assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5, rtol=0)
