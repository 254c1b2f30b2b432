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

FEATURE_KEYS = ("conv_id", "input_ids", "position_ids", "token_type_ids", "lm_labels", "weights",
                "input_len")


def windows(weights: list[float], inputs: list[list[int]], max_len: int):
    """Yield (turns, weights) windows of a conversation: the original's sliding window.

    `size` counts tokens plus one EOS per turn. A turn longer than max_len closes the window and
    is skipped. Otherwise, when the window is already over max_len (checked before adding the
    next turn), it is emitted and restarts from its last turn, which becomes pure context. So a
    window emitted on overflow is longer than max_len; the loaders drop it later, as they did.
    """
    turns, ws, size = [], [], 0
    for ids, w in zip(inputs, weights):
        if len(ids) > max_len:
            if len(turns) >= 2:
                yield turns, ws
            turns, ws, size = [], [], 0
            continue
        if size > max_len:
            yield turns, ws
            turns, ws = turns[-1:], ws[-1:]
            size = len(turns[0]) + 1
        turns.append(ids)
        ws.append(w)
        size += len(ids) + 1
    if len(turns) >= 2:
        yield turns, ws


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


def _floats_json(ws: list[float]) -> str:
    # orjson writes most floats as Python does (1.0, 0.5); NaN/inf/exponents differ: use json then
    if orjson is None or any(orjson.dumps(w).decode() != float.__repr__(w) for w in set(ws)):
        return json.dumps(ws)
    return orjson.dumps(ws).decode().replace(",", ", ")


_POSITIONS: dict[int, tuple[list[int], str]] = {}  # n -> (0..n-1, its JSON)


def _positions_json(positions: list[int]) -> str:
    n = len(positions)
    if n not in _POSITIONS:
        _POSITIONS[n] = (list(range(n)), json.dumps(list(range(n))))
    rng, text = _POSITIONS[n]
    return text if positions == rng else _ints_json(positions)


def feature_tail(f: dict) -> str:
    """JSON of a feature without conv_id and its opening brace: `'{"conv_id": %d, ' + tail` is
    exactly Python's json.dumps of the full feature (NaN/Infinity weights included, as the
    original wrote them), so conv_ids can be numbered after parallel workers."""
    return ('"input_ids": ' + _ints_json(f["input_ids"]) + ', "position_ids": ' + _positions_json(f["position_ids"]) +
            ', "token_type_ids": ' + _ints_json(f["token_type_ids"]) + ', "lm_labels": ' + _ints_json(f["lm_labels"]) +
            ', "weights": ' + _floats_json(f["weights"]) + ', "input_len": ' + str(f["input_len"]) + "}")


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
