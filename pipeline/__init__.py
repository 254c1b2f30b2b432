"""The demo pipeline: data -> prepro -> train -> decode -> evaluate -> report, one offline command.

Stages run the toolkit's own command lines (prepro.py, LSP_train.py, decode.py, python -m dstc,
make -C reddit_extractor) as subprocesses, skip themselves when their output is already there
and valid, and stop the demo with the failing stage's own message.

Modules: settings (every demo setting, and the flags built from them), build (stamps and the
command runner), stages (the stages in order), reddit_source (the Reddit data source), report.
"""
from .build import Interrupted, StageError
from .settings import DemoSettings
from .stages import run_demo

__all__ = ["DemoSettings", "Interrupted", "StageError", "run_demo"]
