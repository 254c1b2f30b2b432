"""The demo pipeline: data -> prepro -> train -> decode -> evaluate -> report, one offline command.

Stages run the toolkit's own command lines (prepro.py, LSP_train.py, decode.py, python -m dstc,
make -C reddit_extractor) as subprocesses, skip themselves when their output is already there
and valid, and stop the demo with the failing stage's own message.
"""
from .stages import DemoSettings, StageError, run_demo

__all__ = ["DemoSettings", "StageError", "run_demo"]
