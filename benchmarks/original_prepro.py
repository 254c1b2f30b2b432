"""The original DialoGPT prepro.py, re-implemented from its description (the project's notes on
the original code) for benchmarking only: pytorch-pretrained-bert 0.6.1's pure-Python GPT-2 BPE
with its per-word cache, the original's per-line `_get_inputs_from_text`, `_make_features` and
`_make_feature`, `json.dumps` + `gzip.compress` (level 9) per chunk, and shelve writes over
dbm.dumb. tests/test_bench_prepro.py checks it yields the original's features byte for byte
on the golden inputs, so bench_prepro.py measures against the real algorithm.
"""
from __future__ import annotations

import dbm.dumb
import gzip
import json
import shelve
from pathlib import Path

import regex as re

END_OF_TEXT_TOKEN = "<|endoftext|>"


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(n) for n in cs]))


def get_pairs(word):
    pairs = set()
    prev_char = word[0]
    for char in word[1:]:
        pairs.add((prev_char, char))
        prev_char = char
    return pairs


class GPT2Tokenizer:
    """pytorch-pretrained-bert 0.6.1's GPT2Tokenizer.encode (no special tokens)."""

    def __init__(self, vocab_file, merges_file):
        self.encoder = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
        self.byte_encoder = bytes_to_unicode()
        bpe_data = Path(merges_file).read_text(encoding="utf-8").split("\n")[1:-1]
        bpe_merges = [tuple(merge.split()) for merge in bpe_data]
        self.bpe_ranks = dict(zip(bpe_merges, range(len(bpe_merges))))
        self.cache = {}
        self.pat = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = get_pairs(word)
        if not pairs:
            return token
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = " ".join(word)
        self.cache[token] = word
        return word

    def tokenize(self, text):
        bpe_tokens = []
        for token in re.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            bpe_tokens.extend(bpe_token for bpe_token in self.bpe(token).split(" "))
        return bpe_tokens

    def encode(self, text):
        return [self.encoder.get(token, 0) for token in self.tokenize(text)]


class InputFeatures_train:
    def __init__(self, conv_id, input_ids, position_ids, token_type_ids, lm_labels, weights, input_len=None):
        self.conv_id = conv_id
        self.input_ids = input_ids
        self.position_ids = position_ids
        self.token_type_ids = token_type_ids
        self.lm_labels = lm_labels
        self.weights = weights
        self.input_len = len(input_ids) if input_len is None else input_len


def _norm_text(text):
    w, *toks = text.strip().split()
    try:
        w = float(w)
    except Exception:
        toks = [w] + toks
        w = 1.0
    return w, " ".join(toks)


def _get_inputs_from_text(text, tokenizer):
    srcs, tgt = text.strip().split("\t")
    weights, inputs = [], []
    for src in srcs.split(" EOS "):
        src_weight, src = _norm_text(src)
        weights.append(src_weight)
        inputs.append(tokenizer.encode(src))
    tgt_weight, tgt = _norm_text(tgt)
    if tgt_weight != 0:
        weights.append(tgt_weight)
        inputs.append(tokenizer.encode(tgt))
    return weights, inputs


def _make_features(id_, weights, inputs, tokenizer, max_len):
    end_of_text_id = tokenizer.encoder[END_OF_TEXT_TOKEN]
    features, sents, ws, len_, i = [], [], [], 0, 0
    for ids, w in zip(inputs, weights):
        if len(ids) > max_len:
            if len(sents) >= 2:
                feat = _make_feature(id_ + i, sents, ws, end_of_text_id)
                if feat is not None:
                    features.append(feat)
                    i += 1
            len_, sents, ws = 0, [], []
            continue
        elif len_ > max_len:
            feat = _make_feature(id_ + i, sents, ws, end_of_text_id)
            if feat is not None:
                features.append(feat)
                i += 1
            len_ = len(sents[-1]) + 1
            sents, ws = sents[-1:], ws[-1:]
        len_ += len(ids) + 1
        sents.append(ids)
        ws.append(w)
    if len(sents) >= 2:
        feat = _make_feature(id_ + i, sents, ws, end_of_text_id)
        if feat is not None:
            features.append(feat)
    return features


def _make_feature(id_, sents, ws, eos):
    if all(w == 0 for w in ws[1:]):
        return None
    input_ids = [i for s in sents for i in s + [eos]][:-1]
    lm_labels, weights, token_type_ids = [], [], []
    for i, (s, w) in enumerate(zip(sents, ws)):
        if i == 0:
            lm_labels += [-1] * len(s)
            weights += [0.0] * len(s)
            token_type_ids += [0] * len(s)
            continue
        token_type_ids += [i] * (len(s) + 1)
        if w == 0.0:
            lm_labels += [-1] * (len(s) + 1)
            weights += [0.0] * (len(s) + 1)
        else:
            lm_labels += s + [eos]
            weights += [w] * (len(s) + 1)
    i = len(lm_labels) - 1  # cut trailing -1 labels
    while i >= 0:
        if lm_labels[i] != -1:
            break
        i -= 1
    input_ids, lm_labels = input_ids[:i + 1], lm_labels[:i + 1]
    weights, token_type_ids = weights[:i + 1], token_type_ids[:i + 1]
    while len(input_ids) % 8 != 0:  # pad to multiples of 8
        input_ids.append(0)
        token_type_ids.append(0)
        lm_labels.append(-1)
        weights.append(0.0)
    position_ids = list(range(len(input_ids)))
    return InputFeatures_train(id_, input_ids, position_ids, token_type_ids, lm_labels, weights)


def prepro(corpus, db_dir, tokenizer, max_seq_len=128, chunk_size=65536, reverse=False, two_turn=False):
    """The original main(): one shelve DB of gzip(json) chunks. Returns the feature count."""
    Path(db_dir).mkdir(parents=True)
    with open(corpus, "r", encoding="utf-8") as reader, \
            shelve.Shelf(dbm.dumb.open(str(Path(db_dir) / "db"), "n")) as db:
        chunk, n_chunk, n_example = [], 0, 0
        for line in reader:
            try:
                if len(chunk) >= chunk_size:
                    db[f"chunk_{n_chunk}"] = gzip.compress(json.dumps(chunk[:chunk_size]).encode("utf-8"))
                    chunk = chunk[chunk_size:]
                    n_chunk += 1
                weights, inputs = _get_inputs_from_text(line, tokenizer)
                if reverse:
                    weights, inputs = list(reversed(weights)), list(reversed(inputs))
                if two_turn:
                    weights, inputs = weights[:2], inputs[:2]
                if len(weights) < 2:
                    continue
                for feature in _make_features(n_example, weights, inputs, tokenizer, max_seq_len):
                    chunk.append(vars(feature))
                    n_example += 1
            except Exception:  # the original printed the exception and went on
                continue
        db[f"chunk_{n_chunk}"] = gzip.compress(json.dumps(chunk).encode("utf-8"))
    meta = {"n_example": n_example, "chunk_size": chunk_size, "max_seq_len": max_seq_len,
            "reverse": reverse, "two_turn": two_turn}
    (Path(db_dir) / "meta.json").write_text(json.dumps(meta))
    return n_example


def dump(db_dir):
    """Every feature as a JSON line, in chunk order (the golden files' format)."""
    out = []
    with shelve.Shelf(dbm.dumb.open(str(Path(db_dir) / "db"), "r")) as db:
        for k in sorted(db, key=lambda k: int(k.split("_")[1])):
            out += [json.dumps(f) + "\n" for f in json.loads(gzip.decompress(db[k]))]
    return "".join(out)
