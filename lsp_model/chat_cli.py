"""Chat with a DialoGPT checkpoint on the terminal (multi-turn, optional MMI reranking).

    python interact.py --model models/medium
    python interact.py --model run_dir --preset topk --reverse_model small_reverse.pkl
    python interact.py --model run_dir --ranker updown.pth --num_candidates 16     # DialogRPT
    printf 'hi there\\nhow are you?\\n' | python interact.py --model m     # one reply per input line

The history is kept as token ids and trimmed to --history_budget tokens (oldest turns first):
long histories make replies shrink and repeat (DialoGPT #84). Type /help for the commands
(/reset, /set NAME VALUE, /preset NAME, /settings, /history, /quit). Without --preset or
sampling flags the `nucleus` preset is used. Empty lines are ignored. See docs/decoding.md.
"""
from __future__ import annotations

import argparse
import sys

from lsp_io.cli import UsageError, command
from lsp_model.generation_args import (add_history_arg, add_model_args, add_reply_args, check_model_paths,
                                       gen_config_from_args, use_chat_preset_by_default)

# torch, transformers and the model code are imported in main(), after the arguments are
# parsed: --help and a bad flag answer at once instead of after seconds of imports.


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    add_history_arg(p)
    add_reply_args(p)
    args = p.parse_args(argv)
    use_chat_preset_by_default(args)
    return args


def lines(tty: bool):
    """User lines, empty ones skipped: a prompt on a terminal; plain lines (no prompt) when stdin
    is piped."""
    while True:
        try:
            line = input("you> ") if tty else sys.stdin.readline()
        except EOFError:
            return
        if not tty and line == "":
            return
        line = line.rstrip("\r\n")
        if line.strip():
            yield line


@command("interact.py")
def main(argv=None) -> int:
    args = parse_args(argv)
    check_model_paths(args)  # before torch: a missing model is one line at once
    if hasattr(sys.stdin, "reconfigure"):  # binary input: UnicodeDecodeError (one line, exit 2), not text
        sys.stdin.reconfigure(errors="strict")  # with lone surrogates that the tokenizer chokes on
    from lsp_io.cpu import use_huge_pages
    use_huge_pages()  # before torch
    from lsp_model.chat import History, clean_hypothesis, reply, run_command
    from lsp_model.checkpoint import CheckpointError
    from lsp_model.decoding import default_device, load_decoder, load_reranker
    from lsp_model.tokenizer import TokenizerNotFound, decode, encode
    try:
        cfg = gen_config_from_args(args)
        device = args.device or default_device()
        model, tok, eos, vocab = load_decoder(args.model, args.tokenizer, args.config, device)
        reranker = (load_reranker(args.reverse_model, args.reverse_tokenizer, tok, device, args.mmi_lambda)
                    if args.reverse_model else None)
        if args.ranker:
            from lsp_rank.rerank import load_ranker_reranker
            reranker = load_ranker_reranker(args, tok, device, mmi=reranker)
    except (ValueError, OSError, CheckpointError, TokenizerNotFound) as e:
        raise UsageError(str(e)) from None  # one line naming the script (lsp_io.cli)
    tty = sys.stdin.isatty()
    extra = {"history_budget": args.history_budget, "mmi_lambda": args.mmi_lambda, "num_candidates": args.num_candidates}
    if tty:
        how = " + ".join(n for n, on in (("MMI", args.reverse_model), ("DialogRPT", args.ranker)) if on)
        print("Chatting with " + args.model + (f" ({how} reranking)" if how else "") +
              ". /help for commands, /quit to leave.")
    history, turn, warned = History(), 0, False
    try:
        for line in lines(tty):
            if line.strip().startswith("/"):
                msg, cfg, quit_ = run_command(line, cfg, history, tok, extra)
                print(msg, flush=True)
                if quit_:
                    break
                continue
            history.add(encode(tok, line.strip()))
            if reranker is not None:
                reranker.mmi_lambda = extra["mmi_lambda"]
            ids, dropped = reply(model, eos, vocab, cfg, history, extra["history_budget"], turn,
                                 extra["num_candidates"], reranker)
            if dropped and not warned:
                print(f"(note: the history is over {extra['history_budget']} tokens; the oldest turns are "
                      "left out from now on)", file=sys.stderr, flush=True)
                warned = True
            history.add(ids)
            turn += 1
            text = clean_hypothesis(decode(tok, ids))
            print(f"bot> {text}" if tty else text, flush=True)
    except KeyboardInterrupt:
        print("\nbye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
