"""The DialoGPT feature format, defined once: training windows (prepro) and eval examples.

A training feature is the dict the original prepro.py stored, keys in this order:
  conv_id         running example number over the whole corpus
  input_ids       turn0 EOS turn1 EOS ... turnN (no trailing EOS), padded with 0
  position_ids    0..len-1, pads included
  token_type_ids  the turn index (turn i>0 also covers the EOS before it), pads 0
  lm_labels       already shifted: label[t] is the token to predict at t; -1 = not trained
  weights         per-token turn weight (0.0 where not trained); stored, never used in the loss
  input_len       the padded length, a multiple of 8
"""
from __future__ import annotations

import json

try:
    import orjson
except ImportError:  # optional: faster JSON of the id lists
    orjson = None

def spans(lens: list[int], max_len: int):
    """Yield the (start, stop) turn ranges of the original's sliding windows, from turn lengths.

    `size` counts tokens plus one EOS per turn. A turn longer than max_len closes the window and
    is skipped. Otherwise, when the window is already over max_len (checked before adding the
    next turn), it is emitted and restarts from its last turn, which becomes pure context. So a
    window emitted on overflow is longer than max_len; the loaders drop it later, as they did.
    """
    start, size = 0, 0  # the window is turns[start:i]
    for i, n in enumerate(lens):
        if n > max_len:
            if i - start >= 2:
                yield start, i
            start, size = i + 1, 0
            continue
        if size > max_len:
            yield start, i
            start, size = i - 1, lens[i - 1] + 1
        size += n + 1
    if len(lens) - start >= 2:
        yield start, len(lens)


def windows(weights: list[float], inputs: list[list[int]], max_len: int):
    """Yield the (turns, weights) windows of a conversation (see `spans`)."""
    for a, b in spans([len(ids) for ids in inputs], max_len):
        yield inputs[a:b], weights[a:b]


def make_feature(turns: list[list[int]], ws: list[float], eos: int) -> dict | None:
    """One training feature without conv_id, or None when no turn after the first is trained."""
    if all(w == 0 for w in ws[1:]):
        return None
    first = turns[0]
    input_ids = list(first)
    labels = [-1] * len(first)
    weights = [0.0] * len(first)
    types = [0] * len(first)
    for i, (s, w) in enumerate(zip(turns[1:], ws[1:]), 1):
        n = len(s) + 1
        input_ids.append(eos)
        input_ids += s
        types += [i] * n
        if w == 0:
            labels += [-1] * n
            weights += [0.0] * n
        else:  # the EOS before a turn predicts its first token; the turn's last label is EOS
            labels += s
            labels.append(eos)
            weights += [w] * n
    # Cut trailing untrained positions (a zero-weight last turn), then pad to a multiple of 8.
    end = len(labels)
    while labels[end - 1] == -1:
        end -= 1
    pad = -end % 8
    n = end + pad
    for xs, value in ((input_ids, 0), (labels, -1), (weights, 0.0), (types, 0)):
        del xs[end:]
        xs += [value] * pad
    return {"input_ids": input_ids, "position_ids": list(range(n)), "token_type_ids": types,
            "lm_labels": labels, "weights": weights, "input_len": n}


def make_features(weights: list[float], inputs: list[list[int]], max_len: int, eos: int) -> list[dict]:
    """All features of one conversation (the original `_make_features`), without conv_id."""
    out = []
    for turns, ws in windows(weights, inputs, max_len):
        f = make_feature(turns, ws, eos)
        if f is not None:
            out.append(f)
    return out


def _ints_json(xs: list[int]) -> str:
    if orjson is None:
        return json.dumps(xs)
    return orjson.dumps(xs).decode().replace(",", ", ")  # Python json's ", " separator


_FLOATS: dict[float, str] = {}


def float_json(w: float) -> str:
    """json.dumps(w): repr for finite floats, NaN/Infinity/-Infinity as the original wrote them."""
    text = _FLOATS.get(w)
    if text is None:
        text = json.dumps(w)
        if w == w and len(_FLOATS) < 4096:  # NaN never equals a key: not cached
            _FLOATS[w] = text
    return text


_POSITIONS: dict[int, str] = {}  # n -> "0, 1, ..., n-1"


def _positions(n: int) -> str:
    if n not in _POSITIONS:
        _POSITIONS[n] = json.dumps(list(range(n)))[1:-1]
    return _POSITIONS[n]


def _tail(input_ids: str, n: int, types: str, labels: str, weights: str) -> str:
    return (f'"input_ids": [{input_ids}], "position_ids": [{_positions(n)}], "token_type_ids": [{types}], '
            f'"lm_labels": [{labels}], "weights": [{weights}], "input_len": {n}}}')


def feature_tail(f: dict) -> str:
    """JSON of a feature without conv_id and its opening brace: `'{"conv_id": %d, ' + tail` is
    exactly Python's json.dumps of the full feature (NaN/Infinity weights included, as the
    original wrote them), so conv_ids can be numbered after parallel workers."""
    if f["position_ids"] != list(range(f["input_len"])):  # never from prepro; exact for any dict
        return json.dumps(f)[1:]
    return _tail(_ints_json(f["input_ids"])[1:-1], f["input_len"], _ints_json(f["token_type_ids"])[1:-1],
                 _ints_json(f["lm_labels"])[1:-1], ", ".join(map(float_json, f["weights"])))


def id_fragments(id_lists: list[list[int]]) -> list[str]:
    """The JSON of each id list without its brackets ("1, 2, 3"; "" for []), in one dumps call."""
    if not id_lists:
        return []
    text = orjson.dumps(id_lists).decode().replace(",", ", ") if orjson else json.dumps(id_lists)
    return text[2:-2].split("], [")


def feature_tails(frags: list[str], lens: list[int], weights: list[float], max_len: int,
                  eos: int) -> list[tuple[int, str]]:
    """(input_len, feature_tail) of every feature of one conversation, written straight from its
    turns' id fragments (see `id_fragments`): the JSON of make_features' dicts, byte for byte.

    Trailing zero-weight turns are left out (make_feature cuts them: all their labels are -1),
    so a window with no trained turn after the first gives no feature.
    """
    out = []
    eos_s = str(eos)
    for a, b in spans(lens, max_len):
        while b - 1 > a and weights[b - 1] == 0:
            b -= 1
        if b - a < 2:
            continue
        n0 = lens[a]
        ids = [frags[a]] if n0 else []
        types, labels, ws = ["0, " * n0], ["-1, " * n0], ["0.0, " * n0]
        end = n0
        for i in range(a + 1, b):
            s, n, w = frags[i], lens[i] + 1, weights[i]
            end += n
            ids.append(eos_s)
            if n > 1:
                ids.append(s)
            types.append(f"{i - a}, " * n)
            if w == 0:
                labels.append("-1, " * n)
                ws.append("0.0, " * n)
            else:  # the EOS before a turn predicts its first token; the turn's last label is EOS
                labels.append(f"{s}, {eos_s}, " if n > 1 else f"{eos_s}, ")
                ws.append(f"{float_json(w)}, " * n)
        pad = -end % 8  # pad to a multiple of 8
        out.append((end + pad, _tail(", ".join(ids) + ", 0" * pad, end + pad,
                                     "".join(types)[:-2] + ", 0" * pad,
                                     "".join(labels)[:-2] + ", -1" * pad,
                                     "".join(ws)[:-2] + ", 0.0" * pad)))
    return out


def feature_json(conv_id: int, tail: str) -> str:
    return '{"conv_id": ' + str(conv_id) + ", " + tail


def eval_feature(context: list[int], response: list[int], max_len: int, eos: int) -> dict | None:
    """An eval example (the original `convert_examples_to_features_dynamic`), or None if dropped.

    Over max_len: cut the context on the left if it is longer than the overflow, else cut the
    response on the right; drop the example when even an empty response does not fit.
    """
    total = len(context) + len(response) + 2
    if total > max_len:
        over = total - max_len
        if len(context) > over:
            context = context[over:]
        else:
            keep = max_len - len(context) - 2
            if keep < 0:
                return None
            response = response[:keep]
    input_ids = context + [eos] + response + [eos]
    return {"input_ids": input_ids, "position_ids": list(range(len(input_ids))),
            "token_type_ids": [0] * len(input_ids),
            "lm_labels": [-1] * len(context) + response + [eos, -1],
            "context_len": len(context), "response_len": len(response)}
