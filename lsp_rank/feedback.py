"""A feedback log -> ranker training pairs {"context": [turn, ...], "pos": "...", "neg": "..."}.

    python prepare_data.py feedback --input log.jsonl --output pairs.jsonl     (or: rank.py pairs ...)

Each input line is one of (detected per line):
  * a preference pair: TRL's {"prompt", "chosen", "rejected"} (strings, or lists of
    {role, content} messages; without "prompt", chosen and rejected are whole conversations
    whose last message differs), or OpenAI's {"input": {"messages": [...]},
    "preferred_output": [...], "non_preferred_output": [...]};
  * a rated reply: {"context": [turn, ...] or messages, "reply" (or "response"), "rating"}, the
    rating a thumbs up/down (true/false, 1/-1 or 0, "up"/"down", "good"/"bad"). Every up reply
    of a context is paired with every down reply of the same context.
System messages are dropped; the other messages' contents are the turns. A bad line stops with one
error naming the file, the line and the field; contexts rated only up or only down are counted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lsp_io.cli import prog_name

UP = {True, 1, "1", "up", "good", "thumbs_up", "like", "+1", "positive"}
DOWN = {False, 0, -1, "0", "-1", "down", "bad", "thumbs_down", "dislike", "negative"}


def _turns(x, where: str, field: str) -> list[str]:
    """A string, a list of strings, or a list of {role, content} messages (system dropped)."""
    if isinstance(x, str):
        return [x]
    if isinstance(x, list):
        out = []
        for m in x:
            if isinstance(m, str):
                out.append(m)
            elif isinstance(m, dict) and isinstance(m.get("content"), str):
                if m.get("role") != "system":
                    out.append(m["content"])
            else:
                raise ValueError(f'{where}: "{field}" must hold strings or {{"role", "content"}} messages')
        return out
    raise ValueError(f'{where}: "{field}" must be a string or a list of messages')


def _reply(x, where: str, field: str) -> str:
    turns = _turns(x, where, field)
    if not turns:
        raise ValueError(f'{where}: "{field}" is empty')
    return turns[-1]


def preference_pair(d: dict, where: str) -> dict | None:
    """The pair of a TRL or OpenAI preference record; None when `d` is not one."""
    if "preferred_output" in d:
        ctx = _turns((d.get("input") or {}).get("messages", []), where, "input.messages")
        return {"context": ctx, "pos": _reply(d["preferred_output"], where, "preferred_output"),
                "neg": _reply(d.get("non_preferred_output"), where, "non_preferred_output")}
    if "chosen" in d and "rejected" in d:
        if "prompt" in d:
            ctx = _turns(d["prompt"], where, "prompt")
        else:  # implicit prompt: whole conversations sharing all but the last message
            ch, rj = _turns(d["chosen"], where, "chosen"), _turns(d["rejected"], where, "rejected")
            ctx = ch[:-1]
            if ch[:-1] != rj[:-1]:
                raise ValueError(f'{where}: "chosen" and "rejected" differ before their last message')
        return {"context": ctx, "pos": _reply(d["chosen"], where, "chosen"),
                "neg": _reply(d["rejected"], where, "rejected")}
    return None


def rating(d: dict, where: str) -> bool:
    v = d.get("rating", d.get("thumbs", d.get("feedback")))
    v = v.lower() if isinstance(v, str) else v
    if v in UP and not isinstance(v, float):
        return True
    if v in DOWN and not isinstance(v, float):
        return False
    raise ValueError(f'{where}: "rating" must be a thumbs up/down (true/false, 1/-1, "up"/"down"), not {v!r}')


def convert(path: str | Path) -> tuple[list[dict], dict]:
    """(pairs, counts) of one feedback file."""
    path = Path(path)
    pairs, rated = [], {}
    counts = {"lines": 0, "preference_pairs": 0, "rated_replies": 0, "rated_pairs": 0, "contexts_one_sided": 0}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{i}"
            counts["lines"] += 1
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(d, dict):
                raise ValueError(f"{where}: expected a JSON object")
            p = preference_pair(d, where)
            if p is not None:
                pairs.append(p)
                counts["preference_pairs"] += 1
                continue
            if "context" not in d or not ("reply" in d or "response" in d):
                raise ValueError(f'{where}: neither a preference pair (prompt/chosen/rejected, '
                                 f'preferred_output) nor a rated reply (context, reply, rating)')
            ctx = tuple(_turns(d["context"], where, "context"))
            reply = _reply(d["reply"] if "reply" in d else d["response"], where, "reply")
            rated.setdefault(ctx, ([], []))[0 if rating(d, where) else 1].append(reply)
            counts["rated_replies"] += 1
    for ctx, (ups, downs) in rated.items():
        if not ups or not downs:
            counts["contexts_one_sided"] += 1
        for u in ups:
            for n in downs:
                pairs.append({"context": list(ctx), "pos": u, "neg": n})
                counts["rated_pairs"] += 1
    for p in pairs:  # a context without turns is one empty turn, as everywhere in the toolkit
        p["context"] = p["context"] or [""]
    return pairs, counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=prog_name("prepare_data.py") + " feedback", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True, help="feedback JSONL file(s)")
    p.add_argument("--output", required=True, help="pairs JSONL for rank.py train --pairs")
    a = p.parse_args(argv)
    from lsp_io.atomic import atomic_file
    pairs, total = [], {}
    try:
        for path in a.input:
            got, counts = convert(path)
            pairs += got
            total = {k: total.get(k, 0) + v for k, v in counts.items()}
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not pairs:
        print(f"error: no pairs in {', '.join(a.input)} ({total})", file=sys.stderr)
        return 2
    with atomic_file(a.output, "w") as f:
        f.write("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in pairs))
    print(f"wrote {len(pairs)} pairs to {a.output}: " + ", ".join(f"{k} {v}" for k, v in total.items()),
          file=sys.stderr)
    return 0
