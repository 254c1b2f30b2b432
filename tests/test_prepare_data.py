"""prepare_data.py: real conversations (chitchat-dataset) written by the test in every input
format, imported, and the import taken through prepro.py -> LSP_train.py -> decode.py -> dstc."""
import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import prepare_data
from lsp_data import conversations as cv
from lsp_data import formats
from lsp_data.tsv import parse_line

N_CONVS = 60


@pytest.fixture(scope="module")
def chats():
    """The first conversations of chitchat-dataset with >= 2 speakers: (id, [(sender, text)])."""
    import chitchat_dataset
    data = json.loads((Path(chitchat_dataset.__file__).parent / "dataset.json").read_bytes())
    out = []
    for cid, conv in data.items():
        turns = [(run[0]["sender"], " ".join(m["text"] for m in run)) for run in conv["messages"] if run]
        if len({s for s, _ in turns}) == 2:
            out.append((cid, turns))
        if len(out) == N_CONVS:
            return out


def write_jsonl_turns(chats, path):
    with open(path, "w") as f:
        for cid, turns in chats:
            f.write(json.dumps({"id": cid, "turns": [{"speaker": s, "text": t} for s, t in turns]}) + "\n")


def roles(turns):
    """The second speaker of a chat plays the assistant."""
    bot = turns[1][0]
    return [("assistant" if s == bot else "user", t) for s, t in turns]


def write_messages(chats, path):
    with open(path, "w") as f:
        for _, turns in chats:
            msgs = [{"role": "system", "content": "You are a friendly chat partner."}]
            msgs += [{"role": r, "content": t} for r, t in roles(turns)]
            f.write(json.dumps({"messages": msgs}) + "\n")


def write_table(chats, path, delimiter):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(["conversation_id", "speaker", "text"])
        for cid, turns in chats:
            w.writerows([cid, s, t] for s, t in turns)


def parlai_escape(text):
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("|", "__PIPE__")


def write_parlai(chats, path):
    """ParlAI's text format: partner text, the bot's reply as labels; the bot opens nothing."""
    with open(path, "w") as f:
        for _, turns in chats:
            rt = roles(turns)
            pairs = [(rt[i][1], rt[i + 1][1]) for i in range(0, len(rt) - 1, 2)]
            for j, (text, label) in enumerate(pairs):
                done = "\tepisode_done:True" if j == len(pairs) - 1 else ""
                f.write(f"text:{parlai_escape(text)}\tlabels:{parlai_escape(label)}{done}\n")


def write_hf(chats, path):
    import datasets
    rows = {"conversation_id": [], "speaker": [], "text": []}
    for cid, turns in chats:
        for s, t in turns:
            rows["conversation_id"].append(cid)
            rows["speaker"].append(s)
            rows["text"].append(t)
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))


def write_hf_parquet(chats, path):
    import datasets
    msgs = [[{"role": r, "content": t} for r, t in roles(turns)] for _, turns in chats]
    datasets.Dataset.from_dict({"dialog": msgs}).to_parquet(str(path))


# name -> (writer, file name, extra flags)
FORMATS = {
    "jsonl_turns": (write_jsonl_turns, "chats.jsonl", []),
    "jsonl_messages": (write_messages, "chats.jsonl", []),
    "csv": (lambda c, p: write_table(c, p, ","), "chats.csv", []),
    "tsv": (lambda c, p: write_table(c, p, "\t"), "chats.tsv", []),
    "parlai": (write_parlai, "chats.txt", []),
    "hf_save_to_disk": (write_hf, "chats_ds", []),
    "hf_parquet": (write_hf_parquet, "chats.parquet", ["--messages_col", "dialog"]),
}


def run_import(tmp_path, name, chats, extra=(), out_name=None):
    write, fname, flags = FORMATS[name]
    src = tmp_path / fname
    write(chats, src)
    out = tmp_path / (out_name or f"out_{name}")
    rc = prepare_data.main(["--input", str(src), "--out", str(out), "--valid_frac", "0.1", "--test_frac", "0.1",
                            *flags, *extra])
    assert rc == 0
    return out, json.loads((out / "data.json").read_text())


def line_turns(line):
    weights, texts = parse_line(line)
    return weights, texts


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_imports_real_chats(tmp_path, chats, name):
    out, s = run_import(tmp_path, name, chats)
    assert s["conversations"] == N_CONVS and not s["malformed"]
    train = (out / "train.tsv").read_text().splitlines()
    assert len(train) == s["lines"]["train"] > 300
    owners = {}  # turn text -> conversations it occurs in ("hi" is in several)
    for i, (_, turns) in enumerate(chats):
        for _, t in turns:
            owners.setdefault(cv.clean_text(t), set()).add(i)
    sides = {}

    def seen_in(text, side):
        if len(owners[text]) == 1:
            sides.setdefault(min(owners[text]), set()).add(side)
    for line in train:
        w, texts = line_turns(line)
        assert w == [0.0] * (len(w) - 1) + [1.0]  # context only, then the one target
        seen_in(texts[-1], "train")
    assert_assistant_only = name in ("jsonl_messages", "parlai", "hf_parquet")
    if assert_assistant_only:  # only the assistant's (second speaker's) turns are targets
        bot_turns = {cv.clean_text(t) for _, turns in chats for r, t in roles(turns) if r == "assistant"}
        assert all(line_turns(ln)[1][-1] in bot_turns for ln in train)
    for fname, side in (("valid.tsv", "valid"), ("test.refs.tsv", "test")):
        for line in (out / fname).read_text().splitlines():
            ctx, *refs = line.split("\t")
            assert refs and "EOS" not in refs[0]
            seen_in(refs[0], side)
    assert all(len(v) == 1 for v in sides.values()), "a conversation on two sides of the split"
    assert {"valid", "test"} <= set().union(*sides.values())
    ctx_lines = (out / "test.contexts.tsv").read_text().splitlines()
    assert len(ctx_lines) == s["test_contexts"] == len((out / "test.refs.tsv").read_text().splitlines())


def test_row_formats_give_the_same_data(tmp_path, chats):
    """A conversation as JSONL turns, CSV rows, TSV rows or a datasets folder is the same data."""
    outs = [run_import(tmp_path, n, chats)[0] for n in ("jsonl_turns", "csv", "tsv", "hf_save_to_disk")]
    for f in ("train.tsv", "valid.tsv", "test.refs.tsv"):
        assert len({(o / f).read_bytes() for o in outs}) == 1, f


def all_targets(out):
    """Target texts of all three splits."""
    t = {parse_line(x)[1][-1] for x in (out / "train.tsv").read_text().splitlines()}
    for f in ("valid.tsv", "test.refs.tsv"):
        t |= {r for x in (out / f).read_text().splitlines() for r in x.split("\t")[1:]}
    return t


def test_parlai_messages_and_system(tmp_path, chats):
    """ParlAI and OpenAI messages train the same assistant turns; a system prompt is dropped by
    default and is a context turn with --system context."""
    a, sa = run_import(tmp_path, "jsonl_messages", chats)
    b, sb = run_import(tmp_path, "parlai", chats)
    assert sa["targets"] == sb["targets"] and all_targets(a) == all_targets(b)
    assert sa["dropped"]["system_turn"] == N_CONVS
    assert "friendly chat partner" not in (a / "train.tsv").read_text()
    c, _ = run_import(tmp_path, "jsonl_messages", chats, ["--system", "context"], out_name="c")
    first = (c / "train.tsv").read_text().splitlines()[0]
    assert first.startswith("0.0 You are a friendly chat partner. EOS ")
    _, sd = run_import(tmp_path, "jsonl_messages", chats, ["--train_on", "all"], out_name="d")
    assert sd["lines"]["train"] > 1.6 * sa["lines"]["train"]


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_windows_budget_and_weights(tmp_path):
    """Every line fits the token budget; a target gets the longest context that fits."""
    from lsp_model.tokenizer import load_tokenizer
    tok = load_tokenizer()
    turns = [f"turn number {i} " + "word " * (i % 7) for i in range(30)]
    src = write_lines(tmp_path / "c.jsonl", [json.dumps(turns)])
    s = cv.prepare(formats.read(src), tmp_path / "o", cv.Options(max_seq_len=60, valid_frac=0, test_frac=0),
                   tokenizer=tok)
    lines = (tmp_path / "o" / "train.tsv").read_text().splitlines()
    assert s["targets"] == 29 and len(lines) == 29
    for k, line in enumerate(lines, 1):
        _, texts = parse_line(line)
        n = sum(len(tok.encode(t).ids) + 1 for t in texts)
        assert n <= 56  # 60 rounded down to a multiple of 8
        assert texts[-1] == cv.clean_text(turns[k])
        lo = k - len(texts) + 1
        assert lo == 0 or n + len(tok.encode(cv.clean_text(turns[lo - 1])).ids) + 1 > 56
    s = cv.prepare(formats.read(src), tmp_path / "p", cv.Options(max_context_turns=2, train_on="last",
                                                                   valid_frac=0, test_frac=0), tokenizer=tok)
    assert (tmp_path / "p" / "train.tsv").read_text().count("\n") == 1 and s["lines"]["train"] == 1
    assert (tmp_path / "p" / "train.tsv").read_text().startswith(f"0.0 {cv.clean_text(turns[27])} EOS 0.0 ")


def test_filters_dedup_and_cleaning(tmp_path):
    convs = [
        ["hi there", "ok ok ok fine", "see https://example.com for it", "what about it then"],
        ["hi there", "ok ok ok fine", "see https://example.com for it", "what about it then"],  # duplicate
        ["tab\there EOS now", "two\nlines", "yes"],
    ]
    src = write_lines(tmp_path / "c.jsonl", [json.dumps(c) for c in convs])
    s = cv.prepare(formats.read(src), tmp_path / "a", cv.Options(valid_frac=0, test_frac=0))
    assert s["lines"]["train"] == 5 and s["dropped"]["duplicate"] == 3
    text = (tmp_path / "a" / "train.tsv").read_text()
    assert "0.0 tab here eos now\t1.0 two lines" in text  # no tab/newline/EOS left in a turn
    s = cv.prepare(formats.read(src), tmp_path / "b", cv.Options(filters=cv.FILTERS, valid_frac=0, test_frac=0))
    d = s["dropped"]
    # repeat: 'ok ok ok'; url: turn 2 is neither target nor context; length: 'yes' is one word
    assert d["url"] == 2 and d["no_context"] == 2 and d["repeat"] == 2 and d["short_target"] == 1
    assert (tmp_path / "b" / "train.tsv").read_text() == "0.0 tab here eos now\t1.0 two lines\n"


def test_split_is_seeded_and_order_free(tmp_path, chats):
    rows = [json.dumps({"turns": [t for _, t in turns]}) for _, turns in chats]
    a = write_lines(tmp_path / "a.jsonl", rows)
    b = write_lines(tmp_path / "b.jsonl", rows[::-1])
    opts = dict(valid_frac=0.2, test_frac=0.2, max_test=10**6, max_valid=10**6)
    sa = cv.prepare(formats.read(a), tmp_path / "oa", cv.Options(**opts))
    sb = cv.prepare(formats.read(b), tmp_path / "ob", cv.Options(**opts))
    sc = cv.prepare(formats.read(a), tmp_path / "oc", cv.Options(seed=7, **opts))
    assert sa["conversations_by_split"] == sb["conversations_by_split"]
    for f in ("train.tsv", "valid.tsv"):
        assert sorted((tmp_path / "oa" / f).read_text().splitlines()) == \
            sorted((tmp_path / "ob" / f).read_text().splitlines())
    assert (tmp_path / "oa" / "valid.tsv").read_text() != (tmp_path / "oc" / "valid.tsv").read_text()
    assert sc["lines"]["train"] > 0


def test_malformed_records_named_and_strict(tmp_path, capsys):
    src = write_lines(tmp_path / "m.jsonl", [json.dumps(["a b", "c d"]), "{broken", json.dumps({"x": 1}),
                                             json.dumps([1, 2]), json.dumps(["e f", "g h"])])
    out = tmp_path / "o"
    assert prepare_data.main(["--input", str(src), "--out", str(out), "--test_frac", "0", "--valid_frac", "0"]) == 0
    s = json.loads((out / "data.json").read_text())
    assert s["malformed"]["bad_json"]["first"][0].startswith(f"{src}:2: ")
    assert s["malformed"]["bad_record"]["first"][0].startswith(f"{src}:3: ")
    assert s["malformed"]["bad_turn"]["first"][0].startswith(f"{src}:4: ")
    printed = capsys.readouterr().out
    assert f"{src}:2" in printed and "note: valid.tsv has 0 lines" in printed and "no test contexts" in printed
    assert prepare_data.main(["--input", str(src), "--out", str(tmp_path / "s"), "--strict"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"prepare_data: error: {src}:2: malformed record (bad_json)") and err.count("\n") == 1
    assert not (tmp_path / "s" / "train.tsv").exists()


def test_zero_targets_and_bad_inputs_are_errors(tmp_path, capsys):
    one = write_lines(tmp_path / "one.jsonl", [json.dumps(["only one turn"])])
    assert prepare_data.main(["--input", str(one), "--out", str(tmp_path / "o")]) == 1
    assert "no training line" in capsys.readouterr().err
    assert not (tmp_path / "o" / "train.tsv").exists()  # no empty output left behind
    two = write_lines(tmp_path / "two.jsonl", [json.dumps(["hi", "hello there"])])
    assert prepare_data.main(["--input", str(two), "--out", str(tmp_path / "o"), "--train_on", "assistant"]) == 1
    assert "no turn of speaker 'assistant': set --assistant_speaker" in capsys.readouterr().err
    assert prepare_data.main(["--input", str(two), "--out", str(tmp_path / "o"), "--train_on", "assistant",
                              "--assistant_speaker", "b"]) == 0
    assert (tmp_path / "o" / "train.tsv").read_text() == "0.0 hi\t1.0 hello there\n"
    table = tmp_path / "t.csv"
    table.write_text("id,who,what\n1,a,hi\n")
    assert prepare_data.main(["--input", str(table), "--out", str(tmp_path / "o2")]) == 1
    assert f"{table}:1: no column 'conversation_id', 'text'" in capsys.readouterr().err
    assert prepare_data.main(["--input", str(table), "--conv_col", "id", "--speaker_col", "who", "--text_col", "what",
                              "--out", str(tmp_path / "o2")]) == 1  # one row: nothing to train
    assert prepare_data.main(["--input", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o2")]) == 1
    assert "missing.jsonl: no such file" in capsys.readouterr().err


def test_streams_in_bounded_memory(tmp_path):
    """Peak Python memory (tracemalloc, numpy included) does not grow with the input: 4x the
    conversations, about the same peak. Exact dedup adds its 8 bytes per distinct line."""
    import tracemalloc

    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))  # counts words: fast
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()

    def peak(n, dedup):
        src = tmp_path / f"big{n}.jsonl"
        if not src.exists():
            with open(src, "w") as f:
                for i in range(n):
                    f.write(json.dumps([f"hello {i} how are you", f"fine {i} thanks", f"good {i} bye"]) + "\n")
        tracemalloc.start()
        s = cv.prepare(formats.read(src), tmp_path / f"o{n}",
                       cv.Options(max_valid=50, max_test=50, dedup=dedup), tokenizer=tok)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert s["conversations"] == n and s["lines"]["train"] > 1.8 * n
        return top, s["lines"]["train"]
    peak(1200, True)  # the first merge of dedup runs imports numpy modules: not pipeline memory
    small, _ = peak(1000, False)
    big, _ = peak(4000, False)
    assert big < 1.15 * small + 50_000, (small, big)
    big_dedup, lines = peak(4000, True)
    assert big_dedup - big < 24 * lines, (big, big_dedup, lines)  # the set, and a merge's copy


def test_cli_subprocess(tmp_path, chats, repo_dir):
    src = tmp_path / "c.jsonl"
    write_jsonl_turns(chats[:10], src)
    r = subprocess.run([sys.executable, str(repo_dir / "prepare_data.py"), "--input", str(src), "--out",
                        str(tmp_path / "o"), "--paper_filters"], capture_output=True, text=True, cwd=repo_dir)
    assert r.returncode == 0, r.stderr
    assert "10 conversations" in r.stdout and "tokens per train line" in r.stdout
    assert {p.name for p in (tmp_path / "o").iterdir()} == set(cv.FILES.values())


@pytest.mark.parametrize("name", ["jsonl_turns", "jsonl_messages", "parlai"])
def test_import_trains_decodes_and_evaluates(tmp_path, chats, tiny_dialogue_models, name, monkeypatch, capsys):
    """The import goes through the existing tools as they are: prepro.py -> LSP_train.py
    (fine-tuning a transformers folder: --init_checkpoint DIR) -> decode.py -> python -m dstc
    -> interact.py.
    jsonl_turns stands for csv, tsv and datasets too (byte-identical output, tested above)."""
    import decode
    import interact
    import LSP_train
    from dstc.cli import main as dstc_main
    from lsp_data.prepro import main as prepro_main
    model = str(tiny_dialogue_models["forward"])
    out, s = run_import(tmp_path, name, chats, ["--tokenizer", model, "--max_seq_len", "64", "--max_test", "12"])
    assert s["lines"]["train"] > 200 and s["test_contexts"] >= 6
    db = tmp_path / "train.64len.db"
    assert prepro_main(["--corpus", str(out / "train.tsv"), "--max_seq_len", "64", "--tokenizer", model,
                        "--out", str(db), "--quiet"]) == 0
    assert json.loads((db / "meta.json").read_text())["n_example"] == s["lines"]["train"]  # one feature a line
    r = LSP_train.main(["--model_name_or_path", model, "--init_checkpoint", model, "--train_input_file", str(db),
                        "--eval_input_file", str(out / "valid.tsv"), "--output_dir", str(tmp_path / "run"),
                        "--max_seq_length", "64", "--train_batch_size", "8", "--gradient_accumulation_steps", "1",
                        "--eval_batch_size", "16", "--num_optim_steps", "4", "--valid_step", "4",
                        "--warmup_steps", "1", "--learning_rate", "1e-4", "--fp16", "false", "--pbar", "false"])
    evals = (Path(r["run_dir"]) / "eval_log.txt").read_text().splitlines()
    assert r["global_step"] == 4 and len(evals) >= 2 and math.isfinite(float(evals[-1].split(",")[3]))
    hyp = tmp_path / "hyp.txt"
    assert decode.main(["--model", r["run_dir"], "--tokenizer", model, "--input", str(out / "test.contexts.tsv"),
                        "--output", str(hyp), "--preset", "greedy", "--max_new_tokens", "8", "--quiet"]) == 0
    assert len(hyp.read_text().splitlines()) == s["test_contexts"]
    scores = tmp_path / "scores.json"
    assert dstc_main(["--refs", str(out / "test.refs.tsv"), "--hyp", str(hyp), "--no-meteor",
                      "--profile", "dialogpt_vshuman_off", "--json", str(scores)]) == 0
    result = json.loads(scores.read_text())
    assert result["n_lines"] == s["test_contexts"] and all(0 <= b <= 1 for b in result["bleu"]), result
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi there\nhow are you?\n"))
    assert interact.main(["--model", r["run_dir"], "--tokenizer", model, "--preset", "greedy",
                          "--max_new_tokens", "6", "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2  # one reply per line typed


def test_chatterbot_yaml_multi_reference(tmp_path):
    """chatterbot-corpus (YAML, a prompt with several answers) as JSONL: identical test contexts
    become one multi-reference line that python -m dstc scores."""
    import chatterbot_corpus
    import yaml

    from dstc.cli import main as dstc_main
    rows = []
    for f in sorted((Path(chatterbot_corpus.__file__).parent / "data" / "english").glob("*.yml")):
        data = yaml.load(f.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        rows += [json.dumps([str(t) for t in conv]) for conv in data["conversations"]]
    src = write_lines(tmp_path / "chatterbot.jsonl", rows)
    out = tmp_path / "o"
    assert prepare_data.main(["--input", str(src), "--out", str(out), "--test_frac", "0.3", "--valid_frac", "0.1"]) == 0
    s = json.loads((out / "data.json").read_text())
    assert s["conversations"] == len(rows) > 1000 and s["dropped"]["duplicate"] > 0
    refs = [ln.split("\t")[1:] for ln in (out / "test.refs.tsv").read_text().splitlines()]
    assert len(refs) == s["test_contexts"] and max(len(r) for r in refs) >= 3
    hyp = write_lines(tmp_path / "hyp.txt", [r[0] for r in refs])  # a hypothesis equal to a reference
    assert dstc_main(["--refs", str(out / "test.refs.tsv"), "--hyp", str(hyp), "--no-meteor",
                      "--profile", "dialogpt_vshuman_off", "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["bleu"][0] > 0.9


def test_sharegpt_through_column_flags(tmp_path):
    """ShareGPT-style records need only the field flags: turns under `conversations`,
    `from`/`value` keys, the assistant called `gpt`."""
    rec = {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hi"},
                             {"from": "gpt", "value": "hello there"}, {"from": "human", "value": "how are you"},
                             {"from": "gpt", "value": "fine thanks"}]}
    src = write_lines(tmp_path / "sg.jsonl", [json.dumps(rec)])
    assert prepare_data.main(["--input", str(src), "--out", str(tmp_path / "o"), "--turns_col", "conversations",
                              "--speaker_col", "from", "--text_col", "value", "--assistant_speaker", "gpt",
                              "--test_frac", "0", "--valid_frac", "0"]) == 0
    assert (tmp_path / "o" / "train.tsv").read_text() == (
        "0.0 hi\t1.0 hello there\n0.0 hi EOS 0.0 hello there EOS 0.0 how are you\t1.0 fine thanks\n")
