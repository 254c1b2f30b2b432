"""The whole DialoGPT pipeline in one offline command, on real data.

$ python demo.py                       # chitchat conversations -> prepro -> train a 4-layer model
                                       # on CPU -> greedy + nucleus decoding -> DSTC metrics -> report
$ python demo.py --data dummy --steps 100                 # the original's synthetic single-turn set
$ python demo.py --data small --workers 8                 # Reddit (make -C reddit_extractor SIZE=small)
$ python demo.py --model small --init gpt2 --steps 2000   # fine-tune GPT-2 117M (download or --model_dir)

Everything goes under --output_dir (default demo_output/); a finished stage is skipped on the
next run. See docs/demo.md.
"""
import argparse
import sys
from pathlib import Path

from pipeline import DemoSettings, StageError, run_demo


def parse_args(argv=None) -> DemoSettings:
    p = argparse.ArgumentParser(description="DialoGPT end to end: data, prepro, train, decode, evaluate, report.")
    p.add_argument("--data", choices=["dummy", "chitchat", "small", "full"], default="chitchat",
                   help="chitchat: 4,017 real human chats (chitchat-dataset, offline); dummy: the original's "
                        "synthetic set; small/full: Reddit via make -C reddit_extractor (needs the dumps)")
    p.add_argument("--model", choices=["none", "small", "medium", "large"], default="none",
                   help="none: train the --config model from scratch; else start from original weights")
    p.add_argument("--init", choices=["gpt2", "ft", "fs"], default="gpt2",
                   help="with --model: GPT-2 weights (as the original demo), or DialoGPT multiref "
                        "fine-tuned (ft) / from-scratch (fs) checkpoints")
    p.add_argument("--model_dir", type=Path, help="folder already holding the checkpoint (no download)")
    p.add_argument("--config", type=Path, help="config.json of the model to train from scratch "
                                               "(default: 4 layers, 256 wide, 4 heads, 128 positions)")
    p.add_argument("--steps", type=int, default=500, help="optimizer steps")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--learning_rate", type=float, default=1e-5, help="noam schedule base rate (the original's 1e-5)")
    p.add_argument("--warmup_steps", type=int, default=40)
    p.add_argument("--n_test", type=int, default=200, help="held-out test contexts")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", type=int, default=1, help="processes for prepro / Reddit extraction")
    p.add_argument("--output_dir", type=Path, default=Path("demo_output"))
    p.add_argument("--no_meteor", action="store_true", help="skip METEOR (it needs java)")
    p.add_argument("--threads", type=int, help="CPU threads per stage (OMP/MKL); 1 is faster on a busy machine")
    p.add_argument("--quiet", action="store_true", help="hide the stages' output (it is still in logs/)")
    a = p.parse_args(argv)
    if a.model == "none" and (a.model_dir or a.init != "gpt2"):
        p.error("--model_dir/--init need --model small|medium|large")
    if a.model != "none" and a.config:
        p.error("--config is for --model none; --model uses the checkpoint's own architecture")
    try:
        return DemoSettings(out=a.output_dir, data=a.data, model=a.model, init=a.init, model_dir=a.model_dir,
                            config=a.config, steps=a.steps, batch_size=a.batch_size, lr=a.learning_rate,
                            warmup_steps=a.warmup_steps, workers=a.workers, n_test=a.n_test, seed=a.seed,
                            meteor=not a.no_meteor, threads=a.threads, quiet=a.quiet)
    except ValueError as e:
        p.error(str(e))


def main(argv=None) -> int:
    settings = parse_args(argv)
    try:
        run_demo(settings)
    except StageError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted; run again to continue (finished stages are skipped)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
