"""Serve a DialoGPT checkpoint: an OpenAI-compatible chat API with dynamic batching, and a web chat.

    python serve.py --model models/medium                      # web chat at http://127.0.0.1:8000/
    python serve.py --model run_dir --reverse_model small_reverse.pkl --port 8080 --api-key SECRET
    python serve.py --model m --preset topk --max_batch 64 --batch_wait_ms 10

Clients: any OpenAI client with base_url http://127.0.0.1:8000/v1 and the model id from
GET /v1/models (the checkpoint's folder name, or --model_name). Concurrent requests with the
same decoding settings are gathered (until --batch_wait_ms passes without a new one) into one
batched generate call; when --max_queue requests are waiting, new ones get 429 at once. Bound to 127.0.0.1 unless --host
says otherwise; --api-key (or $DIALOGPT_API_KEY) makes /v1 require `Authorization: Bearer KEY`.
Decoding flags set the defaults (the `nucleus` preset when none is given); a request overrides
max_tokens, temperature (0 = greedy), top_p, n, seed and stop. See docs/serving.md.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from lsp_io.cli import UsageError, command
from lsp_model.generation_args import (add_generation_args, add_history_arg, add_mmi_args, add_model_args,
                                      check_model_paths, gen_config_from_args, use_chat_preset_by_default)


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
    s.add_argument("--max_batch", type=int, default=32, help="requests per generate call (1 = no batching)")
    s.add_argument("--batch_wait_ms", type=float, default=5.0,
                   help="a batch starts when no request came for this long (a burst is over) ...")
    s.add_argument("--batch_max_wait_ms", type=float, default=50.0, help="... or its oldest request waited this long")
    s.add_argument("--max_queue", type=int, default=128, help="waiting requests before new ones get 429")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds a request may wait and run")
    s.add_argument("--max_request_bytes", type=int, default=1 << 20)
    s.add_argument("--log_level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    add_mmi_args(p)
    add_generation_args(p)
    args = p.parse_args(argv)
    use_chat_preset_by_default(args)
    return args


def build(args):
    """(app, model id) from the parsed flags; raises on a bad checkpoint or setting."""
    from lsp_serve.app import create_app
    from lsp_serve.batcher import Batcher
    from lsp_serve.engine import MMI, Engine
    from lsp_model.decoding import default_device, load_decoder, load_reranker

    cfg = gen_config_from_args(args)
    device = args.device or default_device()
    model, tok, eos, vocab = load_decoder(args.model, args.tokenizer, args.config, device)
    mmi = None
    if args.reverse_model:
        rr = load_reranker(args.reverse_model, args.reverse_tokenizer, tok, device, args.mmi_lambda)
        mmi = MMI(rr, args.num_candidates)
    engine = Engine(model, tok, eos, vocab, cfg, args.history_budget, mmi)
    batcher = Batcher(engine.run, args.max_batch, args.batch_wait_ms / 1000, args.max_queue,
                      args.batch_max_wait_ms / 1000)
    name = args.model_name or Path(args.model.rstrip("/")).name
    return create_app(engine, batcher, name, args.api_key, args.timeout, args.max_request_bytes), name


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
    import uvicorn
    where = f"http://{args.host}:{args.port}"
    print(f"serving {name} at {where}/ (OpenAI base_url {where}/v1)" + (", API key required" if args.api_key else ""),
          flush=True)
    uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
