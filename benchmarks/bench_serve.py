"""Serving throughput: serve.py with dynamic batching (--max_batch 32) against one request per
generate call (--max_batch 1), both loaded by the same 32 concurrent clients for a fixed time.
Prints requests/s and p50/p99 latency per round, the mean batch size the server formed, and the
machine's load (rounds alternate between the two servers: a shared CPU's noise hits both).

    python benchmarks/bench_serve.py                         # random 6 x 384 GPT-2, CPU
    python benchmarks/bench_serve.py --model models/medium --duration 30 --rounds 3

Each client sends a chitchat conversation (1-3 turns), waits for the reply and sends the next.
A random-weight model rarely emits EOS, so every reply is --max_tokens long: a fixed amount of
work per request. Only replies that arrive inside a round's window count; at the window's end
the clients hang up and the server drops their queued requests.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsp_data.chitchat import load_conversations  # noqa: E402
from lsp_serve.launch import Server  # noqa: E402


def random_model(out_dir: Path) -> Path:
    """A random-weight GPT-2 of bench_decode's size (6 x 384, GPT-2 vocabulary) with GPT-2's tokenizer."""
    import torch

    from lsp_model.checkpoint import save_pretrained
    from lsp_model.model import build_model, make_config
    from lsp_model.tokenizer import load_tokenizer
    torch.manual_seed(0)
    save_pretrained(build_model(make_config(n_layer=6, n_embd=384, n_head=6)), out_dir, tokenizer=load_tokenizer())
    return out_dir


def conversations(n: int = 256, max_words: int = 60) -> list[list[dict]]:
    out = []
    for turns in load_conversations().values():
        k = 1 + 2 * (len(out) % 2)              # 1 or 3 turns, ending on the user's
        if len(turns) >= k and all(len(t.split()) <= max_words for t in turns[:k]):   # fits the budget
            out.append([{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns[:k])])
        if len(out) == n:
            return out
    return out


async def load_round(url: str, convs, clients: int, duration: float, settings: dict) -> dict:
    lat, codes = [], []
    start = time.monotonic()
    end = start + duration

    async def client(c: httpx.AsyncClient, i: int):
        k = i
        while True:
            body = {"messages": convs[k % len(convs)], "seed": k} | settings
            t = time.monotonic()
            r = await c.post(url + "/v1/chat/completions", json=body)
            if time.monotonic() <= end:
                codes.append(r.status_code)
                if r.status_code == 200:
                    lat.append(time.monotonic() - t)
            k += clients

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as c:
        tasks = [asyncio.create_task(client(c, i)) for i in range(clients)]
        await asyncio.sleep(duration)
        for t in tasks:
            t.cancel()                            # hang up: the server drops what is still queued
        await asyncio.gather(*tasks, return_exceptions=True)
    lat.sort()
    return {"rps": len(lat) / duration, "p50": statistics.median(lat) if lat else float("nan"),
            "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
            "ok": len(lat), "other": {c: codes.count(c) for c in set(codes) if c != 200}}


def health(url: str) -> dict:
    return httpx.get(url + "/health", timeout=60).json()


def settle(url: str, timeout: float = 120.0) -> None:
    """Wait until the server has nothing queued or running (the previous round's tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = health(url)
        if h["queued"] == 0 and h["running"] == 0:
            return
        time.sleep(0.2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint to serve (default: a random 6 x 384 GPT-2)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per round")
    p.add_argument("--rounds", type=int, default=2, help="rounds per server, alternating")
    p.add_argument("--max_tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, help="0 = greedy (default: the server's nucleus sampling)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each server")
    a = p.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="bench_serve-")
    model = a.model or str(random_model(Path(tmp.name) / "random-6x384"))
    convs = conversations()
    settings = {"max_tokens": a.max_tokens} | ({} if a.temperature is None else {"temperature": a.temperature})
    common = ["--model", model, "--threads", str(a.threads), "--max_queue", str(4 * a.clients), "--timeout", "600",
              "--log_level", "warning"]
    env = {"OMP_NUM_THREADS": str(a.threads)}
    modes = {"batched": ["--max_batch", "32"], "sequential": ["--max_batch", "1"]}
    print(f"model {model}, {a.clients} clients, {settings}, {a.duration:g} s rounds; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    results = {m: [] for m in modes}
    with Server(common + modes["batched"], env=env) as sb, Server(common + modes["sequential"], env=env) as ss:
        servers = {"batched": sb, "sequential": ss}
        for m, s in servers.items():            # warm-up: first calls allocate
            asyncio.run(load_round(s.url, convs, 4, 2.0, settings))
        for r in range(a.rounds):
            for m, s in servers.items():
                settle(s.url)
                before, load0 = health(s.url), os.getloadavg()[0]
                res = asyncio.run(load_round(s.url, convs, a.clients, a.duration, settings))
                after = health(s.url)
                n_req, n_bat = after["requests"] - before["requests"], after["batches"] - before["batches"]
                res |= {"batch": n_req / max(n_bat, 1), "load": (load0 + os.getloadavg()[0]) / 2}
                results[m].append(res)
                print(f"round {r + 1} {m:10s} {res['rps']:7.2f} req/s  p50 {res['p50']:6.2f} s  p99 {res['p99']:6.2f} s"
                      f"  {res['batch']:5.1f} req/batch  ({res['ok']} replies, others {res['other']})"
                      f"  load {res['load']:.1f}", flush=True)
    med = {m: statistics.median(x["rps"] for x in rs) for m, rs in results.items()}
    print("| server | req/s (median of rounds) | p50 latency s | p99 latency s | requests per generate call |")
    print("|---|---|---|---|---|")
    for m, rs in results.items():
        print(f"| {m} (--max_batch {modes[m][1]}) | {med[m]:.2f} | {statistics.median(x['p50'] for x in rs):.2f} | "
              f"{statistics.median(x['p99'] for x in rs):.2f} | {statistics.median(x['batch'] for x in rs):.1f} |")
    def ratio(b, s):
        return f"{b / s:.1f}x" if s else "inf"
    per_round = ", ".join(ratio(b["rps"], s["rps"]) for b, s in zip(results["batched"], results["sequential"]))
    print(f"speedup: {ratio(med['batched'], med['sequential'])} requests/s (rounds: {per_round})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
