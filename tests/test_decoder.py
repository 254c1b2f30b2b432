"""The step-level Decoder (lsp_model.generate.Decoder): rows joining mid-flight, cancel, per-row
settings, OpenAI penalties, logit_bias and log-probabilities, on a tiny random GPT-2.

Nothing here depends on what the random model says: each check compares the Decoder with itself
(alone vs batched) or with the model's own logits, or forces tokens with margins far beyond the
random logits (asserted)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from lsp_model.generate import Decoder, RowSettings, generate, make_gen_config
from lsp_model.model import build_model, make_config

EOS = 127


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(make_config(vocab_size=128, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                bos_token_id=EOS, eos_token_id=EOS)).eval()
    with torch.no_grad():  # the margins below need small random logits
        assert m(input_ids=torch.arange(20)[None]).logits.abs().max() < 5
    return m


def ctx(n: int, start: int = 1) -> list[int]:
    return [(start + 7 * i) % 120 for i in range(n)] + [EOS]


def run(dec: Decoder) -> dict[int, list]:
    """Step until every row is done; each row's events."""
    out: dict[int, list] = {}
    while len(dec):
        for e in dec.step():
            out.setdefault(e.row, []).append(e)
    return out


def alone(model, context, settings):
    dec = Decoder(model, EOS)
    h = dec.add(context, settings)
    return [e.token for e in run(dec)[h]]


SAMPLED = RowSettings(max_new_tokens=12, min_new_tokens=12, do_sample=True, temperature=1.5, top_k=40, seed=7)


def test_a_row_joining_mid_flight_gets_what_it_gets_alone(model):
    others = [(ctx(5), RowSettings(max_new_tokens=20, min_new_tokens=20, repetition_penalty=1.3)),
              (ctx(3, 9), RowSettings(max_new_tokens=4, min_new_tokens=4, do_sample=True, top_p=0.8, seed=1)),
              (ctx(9, 4), RowSettings(max_new_tokens=30, min_new_tokens=30, do_sample=True, seed=2,
                                      frequency_penalty=0.5, no_repeat_ngram_size=2))]
    late = [(ctx(2, 3), SAMPLED), (ctx(20, 5), dataclasses.replace(SAMPLED, seed=8, top_k=0, top_p=0.9)),
            (ctx(4, 2), RowSettings(max_new_tokens=10, min_new_tokens=10, presence_penalty=0.7, no_repeat_ngram_size=1))]
    want = [alone(model, c, s) for c, s in late]
    dec = Decoder(model, EOS)
    first = [dec.add(c, s) for c, s in others]
    got: dict[int, list] = {}
    handles = []
    for step in range(40):
        if step in (2, 3, 6):   # one joins with a context longer than the batch's columns so far
            handles.append(dec.add(*late[len(handles)]))
        for e in dec.step():
            got.setdefault(e.row, []).append(e.token)
    assert [got[h] for h in handles] == want
    assert [len(got[h]) for h in first] == [20, 4, 30] and len(dec) == 0
    assert dec.cache.kv is None  # everyone left: the cache memory is given back


def test_rows_with_other_settings_do_not_change_a_row(model):
    mine = alone(model, ctx(6), SAMPLED)
    greedy = RowSettings(max_new_tokens=12, min_new_tokens=12, logit_bias={5: 3.0})
    for crowd in ([], [greedy], [greedy, dataclasses.replace(SAMPLED, seed=99, temperature=0.5)] * 3):
        dec = Decoder(model, EOS)
        hs = [dec.add(ctx(3 + i, i), s) for i, s in enumerate(crowd)]
        h = dec.add(ctx(6), SAMPLED)
        hs.append(dec.add(ctx(1), greedy))
        assert [e.token for e in run(dec)[h]] == mine


def test_cancel_frees_the_row_at_the_next_step(model):
    dec = Decoder(model, EOS)
    a = dec.add(ctx(4), RowSettings(max_new_tokens=30, min_new_tokens=30))
    b = dec.add(ctx(7), RowSettings(max_new_tokens=30, min_new_tokens=30))
    dec.step()
    dec.cancel(a)
    assert len(dec) == 1
    events = dec.step()
    assert [e.row for e in events] == [b] and dec.cache.n == 1
    c = dec.add(ctx(2), RowSettings(max_new_tokens=5))
    dec.cancel(c)               # cancelled before it ever ran
    assert [e.row for e in dec.step()] == [b]
    dec.cancel(b)
    assert dec.step() == [] and len(dec) == 0 and dec.cache.kv is None


def test_length_and_stop(model):
    dec = Decoder(model, EOS)
    h = dec.add(ctx(3), RowSettings(max_new_tokens=4, min_new_tokens=2, logit_bias={EOS: 50.0}))
    ev = run(dec)[h]
    assert [e.finished for e in ev] == [None, None, "stop"] and ev[-1].token == EOS   # EOS banned twice
    dec = Decoder(model, EOS)
    h = dec.add(ctx(3), RowSettings(max_new_tokens=4, logit_bias={EOS: -100.0}))
    assert [e.finished for e in run(dec)[h]] == [None, None, None, "length"]
    dec = Decoder(model, EOS)      # the model's last position ends a row too
    h = dec.add(ctx(60), RowSettings(max_new_tokens=10, logit_bias={EOS: -100.0}))
    assert len(run(dec)[h]) == 64 - 61


def test_logit_bias_forces_and_bans(model):
    base = alone(model, ctx(5), RowSettings(max_new_tokens=8, min_new_tokens=8))
    banned = alone(model, ctx(5), RowSettings(max_new_tokens=8, min_new_tokens=8, logit_bias={base[0]: -100.0}))
    assert base[0] not in banned
    assert alone(model, ctx(5), RowSettings(max_new_tokens=6, logit_bias={33: 60.0})) == [33] * 6


def test_presence_and_frequency_penalties(model):
    forced = RowSettings(max_new_tokens=8, min_new_tokens=8, logit_bias={33: 50.0})
    assert alone(model, ctx(5), dataclasses.replace(forced, presence_penalty=100.0)).count(33) == 1
    # 50 - 20 * count stays the best logit for counts 0, 1 and 2
    assert alone(model, ctx(5), dataclasses.replace(forced, frequency_penalty=20.0)).count(33) == 3
    # a huge presence penalty: a greedy reply never repeats a token
    reply = alone(model, ctx(5), RowSettings(max_new_tokens=30, min_new_tokens=30, presence_penalty=1e4))
    assert len(set(reply)) == len(reply) == 30


def test_logprobs_are_the_models_log_softmax(model):
    context = ctx(6)
    dec = Decoder(model, EOS)
    h = dec.add(context, RowSettings(max_new_tokens=6, min_new_tokens=6, do_sample=True, seed=3, logprobs=4,
                                     repetition_penalty=2.0, top_k=5))
    dec.add(ctx(2), RowSettings(max_new_tokens=3))
    ev = run(dec)[h]
    ids = context + [e.token for e in ev]
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    for k, e in enumerate(ev):
        row = ref[len(context) - 1 + k]
        assert e.logprob == pytest.approx(row[e.token].item(), abs=1e-4)
        top = row.topk(4)
        assert [t for t, _ in e.top_logprobs] == top.indices.tolist()
        assert [v for _, v in e.top_logprobs] == pytest.approx(top.values.tolist(), abs=1e-4)


def test_generate_runs_on_the_decoder_and_keeps_its_results(model):
    ctxs = [ctx(3), ctx(9, 2), ctx(1)]
    cfg = make_gen_config("topk", max_new_tokens=10, num_return_sequences=2)
    ids = lambda out: [[h["ids"] for h in hs] for hs in out]  # noqa: E731
    batched = generate(model, ctxs, cfg, EOS)
    for i, c in enumerate(ctxs):
        assert ids(generate(model, [c], cfg, EOS, indices=[i])) == ids([batched[i]])
    with pytest.raises(ValueError, match="logit_bias"):
        Decoder(model, EOS).add(ctx(2), RowSettings(logit_bias={500: 1.0}))


class _Always(dict):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def get(self, key, default=None):
        return self.value


def test_the_fast_head_never_changes_a_greedy_choice(model, monkeypatch):
    """Where the head's fastest form is not bit-equal, its logits carry an error bound and a
    greedy choice closer than that is recomputed with the model's own head."""
    import lsp_model.kv_cache as kc
    settings = RowSettings(max_new_tokens=15, min_new_tokens=15, repetition_penalty=1.5)
    contexts = [ctx(4 + i, i) for i in range(3)]

    def greedy():
        dec = Decoder(model, EOS)
        hs = [dec.add(c, settings) for c in contexts]
        got = run(dec)
        return [[e.token for e in got[h]] for h in hs]
    with monkeypatch.context() as m:
        m.setattr(kc, "_head", lambda lm_head, h: kc.Logits(lm_head(h).float()))
        want = greedy()
    monkeypatch.setattr(kc, "_HEAD_FORMS", (kc._transposed,))
    monkeypatch.setattr(kc, "_HEAD_TRIED", {})
    monkeypatch.setattr(kc, "_HEAD_BEST", {})
    monkeypatch.setattr(kc, "_HEAD_SAME", _Always(False))
    calls = []
    exact = kc.Logits.exact
    monkeypatch.setattr(kc.Logits, "exact", lambda self: calls.append(1) or exact(self))
    assert greedy() == want
    monkeypatch.setattr(kc, "_U32", 1e-3)   # a bound so loose that every step is recomputed
    assert greedy() == want and len(calls) >= 15


def test_every_head_form_is_the_model_head_within_the_bound():
    """Each way of computing the head (kv_cache._HEAD_FORMS; blocks of W's rows among them, here
    three blocks and a partial one) gives nn.Linear's logits within the bound `_head` reports,
    and `_head` keeps one form per row bucket."""
    import lsp_model.kv_cache as kc
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(24, 3 * kc._HEAD_BLOCK + 5, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g))
    w = head.weight.detach()
    for rows in (1, 3, 8):
        h = torch.randn(rows, 24, generator=g)
        want = head(h).detach()
        bound = 2 * 24 * kc._U32 / (1 - 24 * kc._U32) * h.norm(dim=-1) * w.norm(dim=1).max()
        for form in kc._HEAD_FORMS:
            got = form(h, w, w.t().contiguous())
            assert got.shape == want.shape and got.is_contiguous()
            assert ((got - want).abs().max(-1).values <= bound).all(), form.__name__
        for _ in range(kc._HEAD_TRIALS * len(kc._HEAD_FORMS) + 2):  # each form in turn, then the fastest
            out = kc._head(head, h)
            err = torch.zeros(rows) if out.err is None else out.err
            assert ((out.logits - want).abs().max(-1).values <= err).all()
            assert out.err is None or torch.equal(out.exact(), want)
    tried = {k[2]: v for k, v in kc._HEAD_TRIED.items() if k[:2] == tuple(w.shape)}
    assert sorted(tried) == [1, 4, 8]
    assert all(len(v[f]) == kc._HEAD_TRIALS for v in tried.values() for f in kc._HEAD_FORMS)
    assert all(kc._HEAD_BEST[(*w.shape, b, torch.get_num_threads())] in kc._HEAD_FORMS for b in tried)


@pytest.mark.parametrize("lengths", [(7,), (7, 7), (7, 3, 5)])
def test_cache_forward_is_transformers_cached_forward_bit_for_bit(model, lengths):
    """SlotCache's prefill and one-token steps give the logits of transformers' own forward with
    its DynamicCache (what `generate` runs), bit for bit: one row, rows without padding, and
    left-padded rows (the attention mask path)."""
    from transformers import DynamicCache

    from lsp_model.generate import left_pad, positions_from_mask
    from lsp_model.kv_cache import SlotCache
    contexts = [ctx(n, start=1 + 3 * i) for i, n in enumerate(lengths)]
    steps = [[(5 * s + 11 * i) % 100 for i in range(len(lengths))] for s in range(6)]
    ids, mask = left_pad(contexts, EOS)
    cache = SlotCache(model)
    cache.reserve(len(contexts), ids.shape[1], len(steps))
    with torch.no_grad():
        past = DynamicCache()
        want = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask),
                     cache=past, use_cache=True, logits_to_keep=1).logits[:, -1]
        got = cache.prefill(contexts)
        assert torch.equal(got.exact(), want)
        pos = torch.tensor([len(c) - 1 for c in contexts])
        for tok in steps:
            tok, pos = torch.tensor(tok), pos + 1
            mask = torch.cat([mask, torch.ones((len(contexts), 1), dtype=mask.dtype)], 1)
            want = model(input_ids=tok[:, None], attention_mask=mask, position_ids=pos[:, None],
                         cache=past, use_cache=True, logits_to_keep=1).logits[:, -1]
            got = cache.decode(tok, pos, cache.first_column())
            assert torch.equal(got.exact(), want)
