"""Serve a DialoGPT checkpoint: an OpenAI-compatible API with continuous batching, and a web chat.

    python serve.py --model models/medium                      # web chat at http://127.0.0.1:8000/
    python serve.py --model run_dir --reverse_model small_reverse.pkl --port 8080 --api-key SECRET
    python serve.py --model run_dir --ranker updown.pth --num_candidates 8      # DialogRPT rerank
    python serve.py --model m --preset topk --max_batch 64 --max_cost 32768

Clients: any OpenAI client with base_url http://127.0.0.1:8000/v1 and the model id from
GET /v1/models (the checkpoint's folder name, or --model_name). Requests join the running batch
at the next decoding step and stream token by token; a request costs rows x (context +
max_tokens) token positions, and past --max_cost (or --max_queue waiting requests) new ones get
429 at once. Bound to 127.0.0.1 and answering only Host 127.0.0.1/localhost unless --host and
--allow_host say otherwise; --api-key (or $DIALOGPT_API_KEY) makes /v1 require
`Authorization: Bearer KEY`. Decoding flags set the defaults (the `nucleus` preset when none is
given); a request overrides them per request. SIGTERM drains for --drain_s. See docs/serving.md.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from lsp_io.cli import UsageError, command
from lsp_model.generation_args import (add_history_arg, add_model_args, add_reply_args, check_model_paths,
                                       gen_config_from_args, use_chat_preset_by_default)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--model_name", help="the model id clients send (default: the checkpoint's name)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    add_history_arg(p)
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes the server to the network")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", "--api_key", dest="api_key", default=os.environ.get("DIALOGPT_API_KEY"),
                   help="require this bearer key on /v1 (default $DIALOGPT_API_KEY; unset = open)")
    s.add_argument("--max_batch", type=int, default=32, help="rows decoded together at most (1 = one at a time)")
    s.add_argument("--max_cost", type=int, default=1 << 15,
                   help="token positions (rows x (context + max_tokens)) queued and running at most; past it 429")
    s.add_argument("--max_queue", type=int, default=128, help="waiting requests before new ones get 429")
    s.add_argument("--max_prefill", type=int, default=512,
                   help="context tokens that join the batch in one step at most (a burst joins over a few steps)")
    s.add_argument("--prefill_per_row", type=int, default=8,
                   help="context tokens that may join in one step per running row (one request at least)")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds a request may wait and run")
    s.add_argument("--stall_s", type=float, default=30.0, help="/health says degraded after this long without a step")
    s.add_argument("--drain_s", type=float, default=10.0, help="on SIGTERM, seconds running requests may finish")
    s.add_argument("--allow_host", action="append", default=[],
                   help="another Host name clients may use (repeatable; * = any); 127.0.0.1/localhost always")
    s.add_argument("--max_request_bytes", type=int, default=1 << 20)
    s.add_argument("--log_level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    add_reply_args(p)
    args = p.parse_args(argv)
    use_chat_preset_by_default(args)
    return args


def build(args):
    """(app, model id) from the parsed flags; raises on a bad checkpoint or setting."""
    from lsp_serve.app import create_app
    from lsp_serve.engine import Engine, Ranking
    from lsp_serve.guard import LOCAL_HOSTS
    from lsp_serve.scheduler import Scheduler
    from lsp_model.decoding import default_device, load_decoder, load_reranker

    cfg = gen_config_from_args(args)
    device = args.device or default_device()
    model, tok, eos, vocab = load_decoder(args.model, args.tokenizer, args.config, device)
    rr = load_reranker(args.reverse_model, args.reverse_tokenizer, tok, device, args.mmi_lambda) \
        if args.reverse_model else None
    if args.ranker:  # DialogRPT (after MMI when both): the same reranking hook
        from lsp_rank.rerank import load_ranker_reranker
        rr = load_ranker_reranker(args, tok, device, mmi=rr)
    ranking = Ranking(rr, args.num_candidates, "dialogrpt" if args.ranker else "mmi") if rr is not None else None
    engine = Engine(model, tok, eos, vocab, cfg, args.history_budget, ranking)
    scheduler = Scheduler(engine, args.max_batch, args.max_queue, args.max_cost, args.stall_s,
                          max_prefill=args.max_prefill, prefill_per_row=args.prefill_per_row)
    name = args.model_name or Path(args.model.rstrip("/")).name
    hosts = (*LOCAL_HOSTS, *args.allow_host, *([args.host] if args.host not in ("0.0.0.0", "::") else []))
    return create_app(engine, scheduler, name, args.api_key, args.timeout, args.max_request_bytes, hosts), name


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound now: a port in use is one line before the model loads (uvicorn
    would say so only after it)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


@command("serve.py")
def main(argv=None) -> int:
    args = parse_args(argv)
    check_model_paths(args)
    sock = listen(args.host, args.port)
    # torch only now: --help and a bad flag answer at once
    from lsp_io.cpu import use_huge_pages
    use_huge_pages()
    import torch
    from lsp_model.checkpoint import CheckpointError
    from lsp_model.tokenizer import TokenizerNotFound
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        app, name = build(args)
    except (ValueError, OSError, CheckpointError, TokenizerNotFound) as e:
        raise UsageError(str(e)) from None  # one line naming the script (lsp_io.cli)
    from lsp_serve.app import serve
    where = f"http://{args.host}:{args.port}"
    print(f"serving {name} at {where}/ (OpenAI base_url {where}/v1)" + (", API key required" if args.api_key else ""),
          flush=True)
    serve(app, sock, args.log_level, args.drain_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
