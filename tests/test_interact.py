"""interact.py: history trimming, commands, and end-to-end chats through a pipe and a pty."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from lsp_model.chat import History, history_context, run_command
from lsp_model.generation_args import GenConfig, make_gen_config

REPO = Path(__file__).resolve().parents[1]
ENV = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_history_context_keeps_newest_turns_within_budget():
    turns = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]]
    assert history_context(turns, 0, 100) == ([1, 2, 3, 0, 4, 5, 0, 6, 0, 7, 8, 9, 10, 0], 0)
    assert history_context(turns, 0, 7) == ([6, 0, 7, 8, 9, 10, 0], 2)      # whole old turns dropped
    assert history_context(turns, 0, 3) == ([9, 10, 0], 3)                 # newest turn cut from the left
    assert history_context([], 0, 5) == ([], 0)


def test_commands():
    h, cfg, extra = History([[1], [2]]), GenConfig(), {"history_budget": 256}
    msg, cfg2, quit_ = run_command("/set top_p 0.5", cfg, h, extra=extra)
    assert cfg2.top_p == 0.5 and not quit_
    assert run_command("/set do_sample yes", cfg, h, extra=extra)[1].do_sample is True
    msg, cfg3, _ = run_command("/set top_p 7", cfg2, h, extra=extra)
    assert "not changed" in msg and cfg3.top_p == 0.5
    assert "unknown setting" in run_command("/set nope 1", cfg, h, extra=extra)[0]
    assert run_command("/set history_budget 64", cfg, h, extra=extra)[0] == "history_budget = 64"
    assert extra["history_budget"] == 64
    assert run_command("/preset dstc_beam", cfg, h, extra=extra)[1].num_beams == 10
    assert "not changed: do_sample takes true or false" in run_command("/set do_sample maybe", cfg, h, extra=extra)[0]
    assert "top_p = 1.0" in run_command("/settings", cfg, h, extra=extra)[0]
    assert "/reset" in run_command("/help", cfg, h)[0]
    run_command("/reset", cfg, h)
    assert h.turns == []
    assert run_command("/quit", cfg, h)[2] is True
    assert "unknown command" in run_command("/frobnicate", cfg, h)[0]


def test_preset_replaces_every_decoding_setting_but_the_seed():
    h = History()
    nucleus = make_gen_config("nucleus", seed=7, max_new_tokens=20, repetition_penalty=1.3)
    msg, greedy, _ = run_command("/preset greedy", nucleus, h)
    assert greedy == make_gen_config("greedy", seed=7)
    assert (greedy.top_p, greedy.no_repeat_ngram_size, greedy.temperature, greedy.do_sample) == (1.0, 0, 1.0, False)
    assert greedy.max_new_tokens == 64 and greedy.repetition_penalty == 1.0
    assert "top_p = 1.0" in msg and "no_repeat_ngram_size = 0" in msg
    assert run_command("/preset nucleus", greedy, h)[1] == make_gen_config("nucleus", seed=7)


def test_piped_chat(tiny_dialogue_models):
    pairs = tiny_dialogue_models["pairs"]
    script = "\n".join([pairs[0][0][0], "/set max_new_tokens 5", "/settings", pairs[1][0][0], "/reset", "",
                        "   ", pairs[2][0][0], "/quit", "never read"]) + "\n"
    r = subprocess.run([sys.executable, "interact.py", "--model", str(tiny_dialogue_models["forward"]),
                        "--reverse_model", str(tiny_dialogue_models["reverse"]), "--preset", "topk"],
                       input=script, capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[1] == "max_new_tokens = 5"
    assert out[2] == "  max_new_tokens = 5"
    rest = [x for x in out[2:] if not x.startswith("  ")]   # after the settings block
    assert rest[1] == "history cleared" and rest[3] == "bye" and len(rest) == 4  # empty lines: no reply
    replies = [out[0], rest[0], rest[2]]
    assert all(replies) and "never read" not in r.stdout
    assert len(replies[1].split()) <= 5


def test_pty_chat(tiny_dialogue_models):
    pid, fd = pty.fork()
    if pid == 0:  # child: a terminal session
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "interact.py", "--model", str(tiny_dialogue_models["forward"]),
                                   "--preset", "greedy", "--max_new_tokens", "10"], ENV)
    buf = b""

    def expect(token: bytes, timeout=90):
        nonlocal buf
        deadline = time.monotonic() + timeout
        while token not in buf and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    buf += os.read(fd, 4096)
                except OSError:
                    break
        assert token in buf, buf.decode(errors="replace")
        head, _, buf = buf.partition(token)
        return head

    try:
        expect(b"you> ")
        os.write(fd, b"\n")                      # an empty line: ignored, prompted again
        expect(b"you> ")
        os.write(fd, tiny_dialogue_models["pairs"][2][0][0].encode() + b"\n")
        expect(b"bot> ")
        reply = expect(b"you> ").strip()
        assert reply
        os.write(fd, b"/history\n")
        hist = expect(b"you> ")
        assert b"1: " in hist and b"2: " in hist
        os.write(fd, b"/quit\n")
        expect(b"bye")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
