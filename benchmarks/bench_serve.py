"""Serving under load: serve.py (iteration-level batching, token streaming) against the peer a user
would reach for, `transformers serve --continuous-batching`, on the same exported model.

    python benchmarks/bench_serve.py                       # random 6 x 384 GPT-2, CPU, 8 and 32 clients
    python benchmarks/bench_serve.py --duration 20 --rounds 3 --clients 8 32
    python benchmarks/bench_serve.py --peer none           # serve.py alone

Both servers get the same requests: POST /v1/completions with a raw prompt (a chitchat
conversation, turns joined by EOS, as DialoGPT sees it), greedy, streamed (to time the first
token). The raw route, because the exported folder has no chat template yet (issue 19 item 1),
so transformers serve's chat route cannot format DialoGPT turns. A random-weight model rarely
emits EOS, so every reply is max_tokens long: uniform (all 32) or mixed (16-40, per request).
Closed-loop clients (each sends again when answered) for a fixed time per round: replies that
end inside the window count for requests/s and latency, first tokens and streamed text chunks
inside it for the time to first token and chunks/s (so a server that ends no reply inside a
round still gets a ratio). Rounds alternate between the servers and settings (a shared CPU's
noise hits both). Prints requests/s, p50/p95 latency, p50 time to first token and chunks/s per
round, then per setting the median [min-max] over rounds and our/peer ratios, with the load.
transformers serve runs offline here once `accelerate` is installed (`pip install -e .[bench]`);
its default KV cache sizing was killed for memory on a 23 GiB machine, so it gets
`--cb-num-blocks 256`; and its continuous batching dies (IndexError in
NoRepeatNGramLogitsProcessor) on a folder whose generation_config.json sets
no_repeat_ngram_size (our exports carry the chat preset's 3), so both servers serve a copy
with it set to 0 (serve.py with `--preset greedy`: the same processors).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsp_data.chitchat import load_conversations  # noqa: E402
from lsp_serve.launch import Server, free_port  # noqa: E402


def random_model(out_dir: Path) -> Path:
    """A random-weight GPT-2 of bench_decode's size (6 x 384, GPT-2 vocabulary) with GPT-2's tokenizer."""
    import torch

    from lsp_model.checkpoint import save_pretrained
    from lsp_model.model import build_model, make_config
    from lsp_model.tokenizer import load_tokenizer
    torch.manual_seed(0)
    save_pretrained(build_model(make_config(n_layer=6, n_embd=384, n_head=6)), out_dir, tokenizer=load_tokenizer())
    return out_dir


def bench_copy(model: str, out_dir: Path) -> Path:
    """The model folder with no_repeat_ngram_size 0 in generation_config.json (see above)."""
    dst = Path(shutil.copytree(model, out_dir))
    cfg_path = dst / "generation_config.json"
    if cfg_path.exists():
        cfg = json.loads(cfg_path.read_text()) | {"no_repeat_ngram_size": 0}
        cfg_path.write_text(json.dumps(cfg, indent=2))
    return dst


def prompts(n: int = 256, max_words: int = 60) -> list[str]:
    """1 or 3 chitchat turns, each followed by EOS (DialoGPT's context format)."""
    out = []
    for turns in load_conversations().values():
        k = 1 + 2 * (len(out) % 2)
        if len(turns) >= k and all(len(t.split()) <= max_words for t in turns[:k]):
            out.append("".join(t + "<|endoftext|>" for t in turns[:k]))
        if len(out) == n:
            return out
    return out


class Peer:
    """`transformers serve MODEL --continuous-batching` on a free port, offline, until it answers."""

    def __init__(self, model: str, threads: int, blocks: int):
        self.cmd = [shutil.which("transformers") or "transformers", "serve", model, "--continuous-batching",
                    "--cb-num-blocks", str(blocks), "--device", "cpu", "--host", "127.0.0.1"]
        self.env = os.environ | {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    def __enter__(self):
        port = free_port()
        self.log = tempfile.NamedTemporaryFile("w+", prefix="tserve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(self.cmd + ["--port", str(port)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env, stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError("transformers serve did not start:\n" + Path(self.log.name).read_text()[-3000:])

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        Path(self.log.name).unlink(missing_ok=True)


async def load_round(url: str, model: str, texts, clients: int, duration: float, lengths) -> dict:
    """Closed-loop clients for `duration` s. Replies that end inside the window count for
    requests/s and latency; every first token inside the window counts for the time to first
    token (also of replies still running at the end), and every streamed text chunk inside it
    for chunks/s (progress even when no reply ends inside the window)."""
    lat, ttft, codes = [], [], []
    chunks = 0
    end = time.monotonic() + duration

    async def client(c: httpx.AsyncClient, i: int):
        nonlocal chunks
        rng, k = random.Random(i), i
        while True:
            body = {"model": model, "prompt": texts[k % len(texts)], "max_tokens": rng.choice(lengths),
                    "temperature": 0, "stream": True}
            t, first = time.monotonic(), None
            async with c.stream("POST", url + "/v1/completions", json=body) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: {") and (choices := json.loads(line[6:])["choices"]):
                        now, fresh = time.monotonic(), first is None
                        first = now - t if fresh else first
                        if now <= end:
                            chunks += bool(choices[0].get("text"))
                            if fresh:
                                ttft.append(first)
            if time.monotonic() <= end:
                codes.append(r.status_code)
                if r.status_code == 200 and first is not None:
                    lat.append(time.monotonic() - t)
            k += clients

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as c:
        tasks = [asyncio.create_task(client(c, i)) for i in range(clients)]
        await asyncio.sleep(duration)
        for t in tasks:
            t.cancel()                            # hang up: the server drops the rest
        await asyncio.gather(*tasks, return_exceptions=True)
    lat.sort()
    return {"rps": len(lat) / duration, "p50": statistics.median(lat) if lat else float("nan"),
            "p95": lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else float("nan"),
            "ttft": statistics.median(ttft) if ttft else float("nan"), "ok": len(lat),
            "cps": chunks / duration, "other": {c: codes.count(c) for c in set(codes) if c != 200}}


MIXES = {"uniform": ("uniform 32", [32]), "mixed": ("mixed 16-40", list(range(16, 41)))}


def med(xs) -> str:
    return f"{statistics.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="exported transformers folder to serve (default: a random 6 x 384 GPT-2)")
    p.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads of each server")
    p.add_argument("--peer", choices=["transformers", "none"], default="transformers")
    p.add_argument("--cb_num_blocks", type=int, default=256)
    p.add_argument("--settle", type=float, default=5.0, help="seconds between rounds")
    p.add_argument("--mixes", nargs="+", choices=list(MIXES), default=list(MIXES),
                   help="max_tokens settings to run (default: both)")
    p.add_argument("--serve_args", nargs="+", default=[""],
                   help="extra serve.py flags, one server per string, all in the same rounds "
                        "(e.g. '' '--prefill_per_row 16': the default against a variant)")
    a = p.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="bench_serve-")
    model = str(bench_copy(a.model or str(random_model(Path(tmp.name) / "random-6x384")), Path(tmp.name) / "served"))
    texts = prompts()
    mixes = {MIXES[m][0]: MIXES[m][1] for m in a.mixes}
    print(f"model {model}; greedy, streamed /v1/completions; {a.duration:g} s rounds x {a.rounds}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    ours = ["--model", model, "--model_name", "m", "--preset", "greedy", "--threads", str(a.threads), "--max_queue", "256",
            "--max_batch", "32", "--max_cost", str(1 << 20), "--timeout", "600", "--log_level", "warning"]
    servers = {" ".join(["serve.py", *x.split()]): Server(ours + x.split(), env={"OMP_NUM_THREADS": str(a.threads)})
               for x in a.serve_args}
    names = dict.fromkeys(servers, "m")
    if a.peer == "transformers":
        servers["transformers serve"] = Peer(model, a.threads, a.cb_num_blocks)
    names["transformers serve"] = model
    results: dict = {}
    try:
        for s in servers.values():
            s.__enter__()
        for name, s in servers.items():          # warm-up: first calls allocate
            asyncio.run(load_round(s.url, names[name], texts, 4, 3.0, [8]))
        for r in range(a.rounds):
            for clients in a.clients:
                for mix, lengths in mixes.items():
                    for name, s in servers.items():
                        time.sleep(a.settle)     # the last round's hung-up requests drain
                        load0 = os.getloadavg()[0]
                        res = asyncio.run(load_round(s.url, names[name], texts, clients, a.duration, lengths))
                        res["load"] = (load0 + os.getloadavg()[0]) / 2
                        results.setdefault((clients, mix, name), []).append(res)
                        print(f"round {r + 1}  {clients:2d} clients  {mix:11s}  {name:18s} {res['rps']:6.2f} req/s  "
                              f"p50 {res['p50']:6.2f} s  p95 {res['p95']:6.2f} s  TTFT p50 {res['ttft']:6.2f} s  "
                              f"{res['cps']:6.1f} chunks/s  "
                              f"({res['ok']} replies, others {res['other']})  load {res['load']:.1f}", flush=True)
    finally:
        for s in servers.values():
            s.__exit__(None, None, None)
    print("\n| clients | max_tokens | server | req/s | p50 latency s | p95 latency s | p50 TTFT s | chunks/s | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (clients, mix, name), rs in results.items():
        print(f"| {clients} | {mix} | {name} | {med([x['rps'] for x in rs])} | {med([x['p50'] for x in rs])} | "
              f"{med([x['p95'] for x in rs])} | {med([x['ttft'] for x in rs])} | {med([x['cps'] for x in rs])} | "
              f"{statistics.median(x['load'] for x in rs):.1f} |")
    peer = "transformers serve"
    for ours_name in [n for n in servers if n != peer] if peer in servers else []:
        print(f"\n{ours_name} / {peer}, per round (same round, same load):")
        for clients in a.clients:
            for mix in mixes:
                o, t = results[(clients, mix, ours_name)], results[(clients, mix, peer)]
                rps = [x["rps"] / y["rps"] if y["rps"] else float("inf") for x, y in zip(o, t)]
                ttft = [x["ttft"] / y["ttft"] for x, y in zip(o, t)]
                cps = [x["cps"] / y["cps"] if y["cps"] else float("inf") for x, y in zip(o, t)]
                print(f"  {clients:2d} clients {mix:11s}: requests/s {med(rps)}x, chunks/s {med(cps)}x, "
                      f"p50 TTFT {med(ttft)}x (lower is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
