"""Decoding settings: the GenConfig dataclass, the named presets and their command-line flags.

Light on purpose (no torch, no transformers): decode.py and interact.py parse their arguments,
answer --help and reject a bad flag before the heavy imports start.
"""
from __future__ import annotations

import argparse
import os
import dataclasses
import math
from dataclasses import dataclass

from lsp_io.cli import UsageError
from lsp_io.flags import parse_bool
from .defaults import HISTORY_BUDGET, SEED


@dataclass
class GenConfig:
    max_new_tokens: int = 64
    min_new_tokens: int = 1           # >= 1 so a reply is never empty (transformers #7800)
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0                    # 0 = off
    top_p: float = 1.0                # 1.0 = off
    num_beams: int = 1
    length_penalty: float = 1.0       # beam: score = sum log p / length ** length_penalty
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0   # 1.0 = off (CTRL-style: logit / p if > 0 else logit * p)
    frequency_penalty: float = 0.0    # OpenAI's: logit -= f * (times the token is in the reply so far)
    presence_penalty: float = 0.0     # OpenAI's: logit -= p * (the token is in the reply so far)
    num_return_sequences: int = 1     # sampling: samples per context; beam: best beams (<= num_beams)
    seed: int = SEED


# Named settings. dstc_beam is the paper's "beam search" row (beam width 10); see docs/decoding.md.
# A preset is applied on top of the GenConfig defaults, so it fixes every setting but the seed.
PRESETS = {
    "greedy": dict(do_sample=False, num_beams=1, max_new_tokens=64),
    "topk": dict(do_sample=True, top_k=10, top_p=1.0, temperature=1.0, num_beams=1, max_new_tokens=64),
    "nucleus": dict(do_sample=True, top_k=0, top_p=0.9, temperature=0.7, num_beams=1,
                    no_repeat_ngram_size=3, max_new_tokens=64),
    "dstc_beam": dict(do_sample=False, num_beams=10, length_penalty=1.0, max_new_tokens=40,
                      no_repeat_ngram_size=0, repetition_penalty=1.0),
}


# The chat defaults: interact.py's preset when none is given, and what an exported transformers
# directory's generation_config.json carries (lsp_model.checkpoint.save_pretrained).
CHAT_PRESET = "nucleus"
# GenConfig fields that mean the same in transformers' GenerationConfig (seed has no counterpart).
HF_KEYS = ("do_sample", "temperature", "top_k", "top_p", "num_beams", "length_penalty",
           "no_repeat_ngram_size", "repetition_penalty", "min_new_tokens", "max_new_tokens")


def hf_generation_kwargs(preset: str = CHAT_PRESET) -> dict:
    """A preset as transformers GenerationConfig keywords (top_k 0 is "off" in both)."""
    cfg = make_gen_config(preset)
    return {k: getattr(cfg, k) for k in HF_KEYS}


def make_gen_config(preset: str | None = None, **overrides) -> GenConfig:
    """Defaults, then the preset, then explicit overrides (None = not given)."""
    cfg = GenConfig()
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        cfg = dataclasses.replace(cfg, **PRESETS[preset])
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    check_config(cfg)
    return cfg


def switch_preset(cfg: GenConfig, preset: str) -> GenConfig:
    """`preset` from scratch (every setting reset to default + preset), keeping only the seed:
    switching from nucleus to greedy must not keep nucleus's top_p or no_repeat_ngram_size."""
    return make_gen_config(preset, seed=cfg.seed)


@dataclass
class RowSettings:
    """The settings of one row of lsp_model.generate.Decoder (rows with different settings share
    a batch). The GenConfig fields mean the same; the others are per row only."""
    max_new_tokens: int = 40
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    logit_bias: dict[int, float] | None = None   # token id -> added to its raw logit (OpenAI: -100..100)
    seed: int | None = None           # this row's sampling generator (None: a fresh random seed)
    logprobs: int | None = None       # None: no log-probability; 0: the chosen token's; k: and the top k

    @classmethod
    def from_config(cls, cfg: GenConfig, **overrides) -> "RowSettings":
        shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls) if hasattr(cfg, f.name)}
        return cls(**(shared | overrides))

    def check(self, vocab: int) -> None:
        problems = setting_problems(self)
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_TOP_LOGPROBS:
            problems.append(f"logprobs must be in [0, {MAX_TOP_LOGPROBS}]")
        for t, b in (self.logit_bias or {}).items():
            if not (isinstance(t, int) and 0 <= t < vocab):
                problems.append(f"logit_bias token {t!r} is not a token id in [0, {vocab})")
            elif not math.isfinite(b):
                problems.append(f"logit_bias of token {t} must be a finite number")
        if problems:
            raise ValueError("bad decoding settings: " + "; ".join(problems))


MAX_TOP_LOGPROBS = 20  # OpenAI's limit for top_logprobs


def setting_problems(cfg) -> list[str]:
    """What is wrong with the settings GenConfig and RowSettings share."""
    problems = []
    if cfg.max_new_tokens < 1:
        problems.append("max_new_tokens must be >= 1")
    if not 0 <= cfg.min_new_tokens <= cfg.max_new_tokens:
        problems.append("min_new_tokens must be in [0, max_new_tokens]")
    if cfg.temperature <= 0:
        problems.append("temperature must be > 0")
    if cfg.top_k < 0:
        problems.append("top_k must be >= 0")
    if not 0 < cfg.top_p <= 1:
        problems.append("top_p must be in (0, 1]")
    if cfg.repetition_penalty <= 0:
        problems.append("repetition_penalty must be > 0")
    if not (math.isfinite(cfg.frequency_penalty) and math.isfinite(cfg.presence_penalty)):
        problems.append("frequency_penalty and presence_penalty must be finite numbers")
    if cfg.no_repeat_ngram_size < 0:
        problems.append("no_repeat_ngram_size must be >= 0")
    return problems


def check_config(cfg: GenConfig) -> None:
    problems = setting_problems(cfg)
    if cfg.num_beams < 1:
        problems.append("num_beams must be >= 1")
    if cfg.num_beams > 1 and cfg.do_sample:
        problems.append("beam sampling is not supported: use num_beams 1 with do_sample, or num_beams > 1 without")
    if cfg.num_return_sequences < 1:
        problems.append("num_return_sequences must be >= 1")
    if cfg.num_beams > 1 and cfg.num_return_sequences > cfg.num_beams:
        problems.append("num_return_sequences must be <= num_beams for beam search")
    if not cfg.do_sample and cfg.num_beams == 1 and cfg.num_return_sequences > 1:
        problems.append("greedy decoding returns one sequence; use sampling or beam search for several")
    if problems:
        raise ValueError("bad decoding settings: " + "; ".join(problems))


def parse_setting(name: str, value: str, current):
    """A chat `/set NAME VALUE`: `value` parsed as the type of the `current` value."""
    try:
        return parse_bool(value) if isinstance(current, bool) else type(current)(value)
    except ValueError:
        kind = "true or false" if isinstance(current, bool) else f"a {type(current).__name__}"
        raise ValueError(f"{name} takes {kind}, not {value!r}") from None


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The checkpoint flags of decode.py, interact.py and serve.py."""
    p.add_argument("--model", required=True, help="checkpoint: .pkl, transformers dir, run folder")
    p.add_argument("--tokenizer", help="tokenizer dir or tokenizer.json (default: the model's folder, else GPT-2)")
    p.add_argument("--config", help="config.json overriding the checkpoint's")
    p.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: cuda if available, else cpu)")


def check_model_paths(args: argparse.Namespace) -> None:
    """Before torch is imported: a --model/--reverse_model/--config that does not exist is refused
    at once (UsageError; the script's name is added by lsp_io.cli)."""
    for flag in ("model", "reverse_model", "config", "tokenizer", "reverse_tokenizer"):
        path = getattr(args, flag, None)
        if path and not os.path.exists(path):
            what = "checkpoint" if flag.endswith("model") else flag.replace("reverse_", "reverse ")
            raise UsageError(f"{what} not found: {path} (--{flag})")


def add_history_arg(p: argparse.ArgumentParser) -> None:
    """--history_budget of the chat commands (interact.py, serve.py)."""
    p.add_argument("--history_budget", type=int, default=HISTORY_BUDGET, help="max context tokens the model sees")


def add_mmi_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """MMI reranking flags (lsp_model.decoding.load_reranker, candidates_config)."""
    m = p.add_argument_group("MMI reranking")
    m.add_argument("--reverse_model", help="reverse (prepro --reverse) checkpoint: rerank candidates by it")
    m.add_argument("--reverse_tokenizer", help="default: the reverse model's folder, else --tokenizer")
    m.add_argument("--num_candidates", type=int, default=10,
                   help="samples per context when sampling (MMI and --ranker)")
    m.add_argument("--mmi_lambda", type=float, default=0.0, help="weight of log P(cand|src) in the MMI score")
    return m


def add_ranker_args(p: argparse.ArgumentParser, required: bool = False, rerank: bool = True) -> None:
    """DialogRPT ranker flags (lsp_rank): rank.py's, and reranking in decode/interact/serve."""
    r = p.add_argument_group("DialogRPT ranking")
    r.add_argument("--ranker", required=required,
                   help="ranker: DialogRPT .pth, ensemble .yml, DialoGPT .pkl or transformers folder" +
                        ("; rerank candidates by it (sampling or beam, --num_candidates)" if rerank else ""))
    r.add_argument("--ranker_dtype", choices=["fp32", "bf16"], default="fp32", help="the ranker's weights")
    r.add_argument("--max_cxt_turn", type=int, help="the ranker sees the last K context turns only")
    if rerank:
        r.add_argument("--ranker_weight", type=float, default=1.0,
                       help="w: rank by w * ranker + (1 - w) * per-token probability of MMI (with "
                            "--reverse_model) or of the generator (docs/ranking.md)")


def add_generation_args(p: argparse.ArgumentParser) -> None:
    """The decoding flags shared by decode.py and interact.py (None = take the preset/default)."""
    g = p.add_argument_group("decoding")
    g.add_argument("--preset", choices=sorted(PRESETS), help="named settings; explicit flags override them")
    g.add_argument("--do_sample", action=argparse.BooleanOptionalAction, default=None)
    for name, typ in (("temperature", float), ("top_k", int), ("top_p", float), ("num_beams", int),
                      ("length_penalty", float), ("no_repeat_ngram_size", int),
                      ("repetition_penalty", float), ("frequency_penalty", float),
                      ("presence_penalty", float), ("min_new_tokens", int), ("max_new_tokens", int),
                      ("num_return_sequences", int), ("seed", int)):
        g.add_argument(f"--{name}", type=typ, default=None, help=f"default {getattr(GenConfig, name)}")


def add_reply_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """How a reply is chosen, for decode, chat and serve: MMI, DialogRPT and the decoding flags.
    Returns the MMI group (decode adds its batch size there)."""
    m = add_mmi_args(p)
    add_ranker_args(p)
    add_generation_args(p)
    return m


def use_chat_preset_by_default(args: argparse.Namespace) -> None:
    """Chat (interact.py, serve.py): with no decoding flag given, decode with CHAT_PRESET."""
    if args.preset is None and args.do_sample is None and args.num_beams is None:
        args.preset = CHAT_PRESET


def gen_config_from_args(args: argparse.Namespace) -> GenConfig:
    names = [f.name for f in dataclasses.fields(GenConfig)]
    return make_gen_config(args.preset, **{n: getattr(args, n, None) for n in names})
