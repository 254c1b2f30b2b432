"""`dialogpt SUBCOMMAND [flags]`: one command for every script; each subcommand is its script
(the same flags, output and exit status). A subcommand's module is imported only when it runs, so
`dialogpt --help` answers at once and imports no torch."""
from __future__ import annotations

import importlib
import sys

from lsp_io import cli as lsp_cli

# subcommand -> (module with main(argv), the script it equals, what it does)
COMMANDS = {
    "prepare": ("lsp_data.prepare_cli", "prepare_data.py", "your conversations -> training TSV, validation TSV, test files"),
    "prepro": ("lsp_data.prepro", "prepro.py", "training TSV -> feature DB"),
    "train": ("gpt2_training.cli", "LSP_train.py", "train or fine-tune, full or LoRA (the original's flags)"),
    "decode": ("dialogpt.decode", "decode.py", "a file of contexts -> one reply per line (MMI, DialogRPT)"),
    "chat": ("lsp_model.chat_cli", "interact.py", "chat on the terminal"),
    "serve": ("lsp_serve.cli", "serve.py", "OpenAI-compatible API with continuous batching, and a web chat"),
    "rank": ("lsp_rank.cli", "rank.py", "DialogRPT: rank candidate replies, or train a ranker"),
    "eval": ("dstc.cli", "python -m dstc", "DSTC-7 metrics (NIST, BLEU, METEOR, entropy, distinct)"),
    "convert": ("lsp_model.convert", "python -m lsp_model.convert", "checkpoint formats: .pkl <-> transformers folder, LoRA merge"),
    "demo": ("pipeline.cli", "demo.py", "the whole pipeline offline: data, prepro, train, decode, evaluate"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {what} ({script})" for name, (_, script, what) in COMMANDS.items())
    return ("usage: dialogpt SUBCOMMAND [flags]   (dialogpt SUBCOMMAND --help for its flags)\n\n"
            f"DialoGPT: data, training, decoding, serving and evaluation.\n\nsubcommands:\n{rows}\n")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"dialogpt: error: unknown subcommand {name!r} (one of: {', '.join(COMMANDS)})", file=sys.stderr)
        return lsp_cli.BAD_INPUT
    prog = f"dialogpt {name}"
    # argparse's default usage line and the one-line errors (lsp_io.cli.run) name what the user typed;
    # restored after, for callers in the same process
    saved = sys.argv[0], lsp_cli.invoked_as
    sys.argv[0] = lsp_cli.invoked_as = prog
    try:
        code = importlib.import_module(COMMANDS[name][0]).main(rest)
    finally:
        sys.argv[0], lsp_cli.invoked_as = saved
    return code if isinstance(code, int) else 0  # train returns its run summary
