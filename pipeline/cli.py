"""The whole DialoGPT pipeline in one offline command, on real data.

$ python demo.py                       # chitchat conversations -> prepro -> train a 4-layer model
                                       # on CPU -> greedy + nucleus decoding -> DSTC metrics -> report
$ python demo.py --data dummy --steps 100                 # the original's synthetic single-turn set
$ python demo.py --data small --workers 8                 # Reddit (make -C reddit_extractor SIZE=small)
$ python demo.py --model small --init gpt2 --steps 2000   # fine-tune GPT-2 117M (download or --model_dir)

Everything goes under --output_dir (default demo_output/); a finished stage is skipped on the
next run, and an interrupted training resumes from its last checkpoint. See docs/demo.md.
"""
import argparse
import sys

from lsp_io.cli import command
from pipeline.settings import DemoSettings, add_demo_args, settings_from_args


def parse_args(argv=None) -> DemoSettings:
    p = argparse.ArgumentParser(description="DialoGPT end to end: data, prepro, train, decode, evaluate, report.")
    add_demo_args(p)
    try:
        return settings_from_args(p.parse_args(argv))
    except ValueError as e:
        p.error(str(e))


@command("demo.py")
def main(argv=None) -> int:
    settings = parse_args(argv)
    if not (settings.repo / "prepro.py").is_file():  # an installed package: no root scripts or configs/
        print(f"demo: error: the demo runs a checkout's scripts and configs/, and {settings.repo} is not one: "
              "run it from a clone of the repository", file=sys.stderr)
        return 2
    from pipeline.stages import Interrupted, StageError, run_demo
    try:
        run_demo(settings)
    except StageError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(f"demo: interrupted{e}; run the same command again to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
