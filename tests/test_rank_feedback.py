"""prepare_data.py feedback: thumbs up/down logs and TRL / OpenAI preference JSONL -> ranker pairs."""
from __future__ import annotations

import json

import prepare_data


def run(tmp_path, lines, capsys):
    inp = tmp_path / "fb.jsonl"
    inp.write_text("".join(json.dumps(x) + "\n" for x in lines))
    rc = prepare_data.main(["feedback", "--input", str(inp), "--output", str(tmp_path / "pairs.jsonl")])
    err = capsys.readouterr().err
    pairs = [json.loads(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()] if rc == 0 else None
    return rc, pairs, err


def test_preference_formats(tmp_path, capsys):
    msgs = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]
    rc, pairs, _ = run(tmp_path, [
        {"prompt": "how are you", "chosen": "great, you?", "rejected": "no"},
        {"prompt": msgs, "chosen": [{"role": "assistant", "content": "hello!"}],
         "rejected": [{"role": "assistant", "content": "what"}]},
        {"chosen": msgs + [{"role": "assistant", "content": "hey"}], "rejected": msgs + [{"role": "assistant", "content": "meh"}]},
        {"input": {"messages": msgs}, "preferred_output": [{"role": "assistant", "content": "hi there"}],
         "non_preferred_output": [{"role": "assistant", "content": "bye"}]},
    ], capsys)
    assert rc == 0 and pairs == [
        {"context": ["how are you"], "pos": "great, you?", "neg": "no"},
        {"context": ["hi"], "pos": "hello!", "neg": "what"},
        {"context": ["hi"], "pos": "hey", "neg": "meh"},
        {"context": ["hi"], "pos": "hi there", "neg": "bye"}]


def test_thumbs_pair_every_up_with_every_down(tmp_path, capsys):
    rc, pairs, err = run(tmp_path, [
        {"context": ["hi", "hello"], "reply": "a", "rating": "up"},
        {"context": ["hi", "hello"], "reply": "b", "rating": -1},
        {"context": ["hi", "hello"], "response": "c", "rating": True},
        {"context": ["other"], "reply": "d", "rating": 1},     # one-sided: no pair, counted
    ], capsys)
    assert rc == 0 and pairs == [{"context": ["hi", "hello"], "pos": "a", "neg": "b"},
                                 {"context": ["hi", "hello"], "pos": "c", "neg": "b"}]
    assert "contexts_one_sided 1" in err


def test_bad_line_names_file_line_field(tmp_path, capsys):
    rc, _, err = run(tmp_path, [{"context": ["hi"], "reply": "a", "rating": "up"},
                                {"context": ["hi"], "reply": "b", "rating": "maybe"}], capsys)
    assert rc == 2 and "fb.jsonl:2" in err and '"rating"' in err and len(err.strip().splitlines()) == 1
