"""A tiny DialoGPT trained in the test session on real dialogue (chitchat-dataset), so decoding
tests see real text instead of noise.

Kept fast on 2 shared cores: a byte-level BPE of ~1k tokens trained on the same exchanges (the
GPT-2 vocabulary would make the output layer 50x larger), GPT-2 with 2 layers x 64 wide, about a
hundred short exchanges encoded as in training (ctx EOS resp EOS, loss on the response only),
and AdamW for a fixed number of epochs (about 7 s of CPU per model). A reverse model (prepro --reverse layout: response EOS
context turns newest-first, loss on the context) is trained the same way for MMI.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from lsp_model.checkpoint import save_pretrained
from lsp_model.model import build_model, lm_loss, make_config
from lsp_model.tokenizer import EOS_TOKEN, encode, eos_id

TINY = dict(n_layer=2, n_embd=64, n_head=4, n_positions=128)


def chitchat_turns(n_conversations: int = 400) -> list[list[str]]:
    """The first conversations of chitchat-dataset, as lists of turns (a sender's consecutive
    messages joined by a space)."""
    import chitchat_dataset
    path = Path(chitchat_dataset.__file__).parent / "dataset.json"
    data = json.loads(path.read_bytes())
    convs = []
    for conv in list(data.values())[:n_conversations]:
        turns = [" ".join(m["text"].strip() for m in group if m["text"].strip()) for group in conv["messages"]]
        convs.append([" ".join(t.split()) for t in turns if t.strip()])
    return convs


def exchanges(convs: list[list[str]], n: int = 100, max_words: int = 12) -> list[tuple[list[str], str]]:
    """(context turns, response) pairs: one context turn, short turns only, first n of them,
    each context used once so the mapping context -> response is learnable."""
    out, seen = [], set()
    for turns in convs:
        for a, b in zip(turns, turns[1:]):
            if len(a.split()) <= max_words and len(b.split()) <= max_words and a not in seen:
                seen.add(a)
                out.append(([a], b))
                if len(out) == n:
                    return out
    return out


def train_tokenizer(texts: list[str], vocab_size: int = 600) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TOKEN], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def features(tok: Tokenizer, pairs: list[tuple[list[str], str]], reverse: bool = False):
    """(input_ids, labels) rows as prepro builds them: turn 0 unlabelled, later turns labelled
    with their tokens + EOS, labels pre-shifted. `reverse` = prepro --reverse: response first,
    then the context turns newest-first."""
    eos = eos_id(tok)
    rows = []
    for ctx, resp in pairs:
        turns = [encode(tok, t) for t in ([resp] + ctx[::-1] if reverse else ctx + [resp])]
        full = [i for t in turns for i in t + [eos]]
        rows.append((full[:-1], [-1] * len(turns[0]) + full[len(turns[0]) + 1:]))
    return rows


def _batches(rows, batch_size, rng, pad):
    order = list(range(len(rows)))
    rng.shuffle(order)
    for i in range(0, len(order), batch_size):
        chunk = [rows[j] for j in order[i:i + batch_size]]
        L = max(len(r[0]) for r in chunk)
        ids = torch.tensor([r[0] + [pad] * (L - len(r[0])) for r in chunk])
        lab = torch.tensor([r[1] + [-1] * (L - len(r[1])) for r in chunk])
        yield ids, lab


def train(tok: Tokenizer, rows, epochs: int = 45, seed: int = 0) -> tuple[torch.nn.Module, float]:
    """Train a tiny GPT-2 on the rows for a fixed number of epochs (not a time budget: the
    model, and so every test outcome, must not depend on how busy the machine is)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    eos = eos_id(tok)
    model = build_model(make_config(vocab_size=tok.get_vocab_size(), bos_token_id=eos, eos_token_id=eos, **TINY))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    loss_epoch = float("inf")
    for _ in range(epochs):
        total, n = 0.0, 0
        for ids, lab in _batches(rows, 16, rng, eos):
            # right padding: causal attention keeps real tokens from seeing the pads (as the original)
            pos = torch.arange(ids.shape[1]).expand_as(ids)
            logits = model(input_ids=ids, position_ids=pos, attention_mask=torch.ones_like(ids)).logits
            loss, _ = lm_loss(logits, lab)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total, n = total + loss.item(), n + 1
        loss_epoch = total / n
    model.eval()
    return model, loss_epoch


def build_tiny_models(out_dir: Path, n_pairs: int = 100) -> dict:
    """Train the forward and reverse tiny models; save both as transformers dirs (tokenizer
    included). Returns paths, the exchanges and the final training losses."""
    threads = torch.get_num_threads()
    # one thread: with the CPU shared by other jobs, 2 spinning OpenMP threads run ~20x slower
    torch.set_num_threads(1)
    try:
        return _build(Path(out_dir), n_pairs)
    finally:
        torch.set_num_threads(threads)


def _build(out_dir: Path, n_pairs: int) -> dict:
    pairs = exchanges(chitchat_turns(), n_pairs)
    tok = train_tokenizer([t for ctx, r in pairs for t in ctx + [r]])
    fwd, fwd_loss = train(tok, features(tok, pairs), epochs=45)
    rev, rev_loss = train(tok, features(tok, pairs, reverse=True), epochs=30, seed=1)
    save_pretrained(fwd, out_dir / "forward", tokenizer=tok)
    save_pretrained(rev, out_dir / "reverse", tokenizer=tok)
    return {"forward": out_dir / "forward", "reverse": out_dir / "reverse", "pairs": pairs,
            "forward_loss": fwd_loss, "reverse_loss": rev_loss}
