"""Convert checkpoints both ways: original `.pkl` <-> transformers directory.

    python -m lsp_model.convert small_ft.pkl models/small_ft          # .pkl -> directory
    python -m lsp_model.convert models/small_ft small_ft.pkl          # directory -> .pkl
    python -m lsp_model.convert tiny.pkl out_dir --config config.json # head count not inferable
    python -m lsp_model.convert --chat_template models/DialoGPT-medium # add the chat template

The direction follows from the paths: a destination ending in .pkl/.pt/.bin is written in the
original layout, anything else becomes a transformers directory. `--config` (a config.json or a
folder holding one, original or transformers keys) gives the architecture when the tensors
cannot tell it: the head count is assumed only for the released widths (768/1024/1280).
Every directory written carries DialoGPT's chat template (lsp_model.chat_template);
`--chat_template DIR` adds it to a folder downloaded from the hub, in place.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lsp_io.cli import command

# torch and the checkpoint code are imported after the arguments are parsed (--help is instant)

PKL_SUFFIXES = (".pkl", ".pt", ".bin")


def convert(src: str, dst: str, config: str | None = None, fp16: bool = False, overwrite: bool = False) -> Path:
    import torch

    from .checkpoint import load_model, save_original_pkl, save_pretrained
    from .tokenizer import load_tokenizer
    model = load_model(src, config=config)
    out = Path(dst)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass --overwrite)")
    if out.suffix in PKL_SUFFIXES:
        return save_original_pkl(model, out, dtype=torch.float16 if fp16 else None)
    src_dir = Path(src) if Path(src).is_dir() else Path(src).parent
    return save_pretrained(model.half() if fp16 else model, out, tokenizer=load_tokenizer(src_dir), overwrite=overwrite)


@command("python -m lsp_model.convert")
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lsp_model.convert", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", nargs="?", help="a .pkl/.pt/.bin/.safetensors file, a transformers directory or a run folder")
    ap.add_argument("dst", nargs="?", help="a .pkl path (original layout) or a directory (transformers layout)")
    ap.add_argument("--chat_template", metavar="DIR",
                    help="instead of converting: add DialoGPT's chat template to the model folder DIR, in place")
    ap.add_argument("--config", help="config.json or folder holding one, when the size cannot be inferred")
    ap.add_argument("--fp16", action="store_true", help="write float16 weights, like the released .pkl files")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    if args.chat_template is not None:
        if args.src or args.dst:
            ap.error("--chat_template DIR takes no SRC/DST")
        from .chat_template import add_chat_template
        try:
            print(add_chat_template(args.chat_template, overwrite=args.overwrite))
        except (FileNotFoundError, FileExistsError, ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    if not (args.src and args.dst):
        ap.error("SRC and DST are required (or --chat_template DIR)")
    from .checkpoint import CheckpointError
    from .tokenizer import TokenizerNotFound
    try:
        out = convert(args.src, args.dst, args.config, args.fp16, args.overwrite)
    except (CheckpointError, FileNotFoundError, FileExistsError, TokenizerNotFound, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
