"""Iteration-level (continuous) batching: one worker thread owns an lsp_model.generate.Decoder and
runs it step by step; requests join the running batch at the next step and leave when done.

- Admission is by cost, not count: a job holds rows x (context + max tokens) KV positions;
  `submit` refuses at once (QueueFull -> 429) when the queued and running jobs already hold
  `max_cost`, or `max_queue` jobs wait; a job that alone is over `max_cost` is TooBig (400).
- At most `max_rows` rows decode at a time. The jobs joining at one step bring at most
  `prefill_per_row` context tokens per running row, and never more than `max_prefill` (one job
  at least): a step's prefill stays in proportion to its decode, so a burst of new requests is
  prefilled over a few steps, its first requests get their first token after a small prefill
  (not after the whole burst's), and the running rows are not held up by one long prefill.
  Waiting jobs join shortest context first (the least prefill before a first token: the
  lowest median wait), except that a job passed over `patience` times goes first, in arrival
  order, so none waits forever.
- A cancelled job (client gone, timed out) leaves the queue at once, or its rows leave the
  batch at the next step; its cost is freed then.
- Each step's tokens go through the job's TextStreams on this thread (detokenizing, stop
  strings: a row whose stop string appears is cancelled) and reach the event loop as messages
  on the job's asyncio queue: ("delta", index, text, logprobs, finish) while streaming,
  ("done", Reply) at the end, ("error", exception) if the decoder fails.
- Rows whose job reranks (MMI or another ranker) are candidates: they stream nothing, and
  when all have finished the ranker picks the best n.
- `health()` tells the truth: "degraded" when the worker died or no step ran for `stall_s`
  while work waits.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from lsp_model.generate import Decoder

from .engine import Engine, Job
from .protocol import Choice, Reply
from .text import TextStream


class QueueFull(Exception):
    pass


class TooBig(Exception):
    pass


class Closed(Exception):
    pass


@dataclass
class _Row:
    index: int                      # candidate number inside its job
    text: TextStream
    ids: list[int] = field(default_factory=list)
    logprob: float = 0.0            # sum over the reply (+ EOS): the reranker's forward score
    tokens: list = field(default_factory=list)   # TokenLogprob per token, when asked
    sent_lp: int = 0                # tokens whose logprobs were already streamed
    finish: str | None = None


class Ticket:
    """One submitted job: its rows in the decoder and the queue its messages arrive on."""

    def __init__(self, job: Job, loop: asyncio.AbstractEventLoop, engine: Engine):
        self.job, self.loop = job, loop
        self.messages: asyncio.Queue = asyncio.Queue()
        self.rows = [_Row(j, TextStream(engine.tok, job.stop, job.clean)) for j in range(len(job.rows))]
        self.live: dict[int, _Row] = {}            # decoder row id -> row
        self.cancelled = False
        self.t = time.monotonic()
        self.passed = 0                            # steps that admitted others while this one waited

    def send(self, *msg) -> None:
        try:
            self.loop.call_soon_threadsafe(self.messages.put_nowait, msg)
        except RuntimeError:    # the event loop is closed: the server is gone
            pass


class Scheduler:
    def __init__(self, engine: Engine, max_rows: int = 32, max_queue: int = 128, max_cost: int = 1 << 15,
                 stall_s: float = 30.0, decoder: Decoder | None = None, max_prefill: int = 512,
                 prefill_per_row: int = 8, patience: int = 8):
        if max_rows < 1 or max_queue < 1 or max_cost < 1:
            raise ValueError("max_rows, max_queue and max_cost must be >= 1")
        self.engine, self.max_rows, self.max_queue, self.max_cost = engine, max_rows, max_queue, max_cost
        self.stall_s, self.max_prefill = stall_s, max_prefill
        self.prefill_per_row, self.patience = prefill_per_row, patience
        self.decoder = decoder if decoder is not None else Decoder(engine.model, engine.eos, engine.vocab)
        self._pending: deque[Ticket] = deque()
        self._active: list[Ticket] = []
        self._owner: dict[int, tuple[Ticket, _Row]] = {}
        self._gone: list[Ticket] = []
        self._cv = threading.Condition()
        self._closed = False                # no new jobs (SIGTERM's drain, then stop)
        self._stop = False                  # the worker ends
        self._cost = 0
        self._thread: threading.Thread | None = None
        self._progress = time.monotonic()   # last step (or idle moment)
        self.stats = {"requests": 0, "refused": 0, "steps": 0, "max_rows_seen": 0}

    # -- the event loop's side --------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="scheduler", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Ticket:
        if job.cost > self.max_cost:
            raise TooBig(f"the request needs {job.cost} token positions ({len(job.rows)} rows x (context "
                         f"{len(job.context)} + max_tokens {job.rows[0].max_new_tokens})), more than the server's "
                         f"limit of {self.max_cost}: lower n or max_tokens")
        ticket = Ticket(job, asyncio.get_running_loop(), self.engine)
        with self._cv:
            if self._closed:
                raise Closed("the server is shutting down")
            if len(self._pending) >= self.max_queue or self._cost + job.cost > self.max_cost:
                self.stats["refused"] += 1
                raise QueueFull(f"{len(self._pending)} requests wait and {self._cost} of {self.max_cost} token "
                                "positions are taken")
            self._cost += job.cost
            self._pending.append(ticket)
            self._cv.notify()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """The client is gone or timed out: drop the job now if it waits, else at the next step."""
        with self._cv:
            if ticket.cancelled:
                return
            ticket.cancelled = True
            if ticket in self._pending:
                self._pending.remove(ticket)
                self._cost -= ticket.job.cost
            elif ticket in self._active:
                self._gone.append(ticket)
                self._cv.notify()

    def health(self) -> dict:
        with self._cv:
            busy = bool(self._pending or self._active)
            oldest = time.monotonic() - self._pending[0].t if self._pending else 0.0
            out = {"queued": len(self._pending), "running": len(self._active), "rows": len(self._owner),
                   "cost": self._cost, "max_cost": self.max_cost, "max_rows": self.max_rows,
                   "max_queue": self.max_queue, "oldest_wait_s": round(oldest, 3), **self.stats}
        stalled = busy and time.monotonic() - self._progress > self.stall_s
        alive = self._thread is not None and self._thread.is_alive()
        out["status"] = "ok" if alive and not stalled and not self._closed else \
            "closed" if self._closed else "degraded"
        if out["status"] == "degraded":
            out["reason"] = "the decoding thread is not running" if not alive else \
                f"no decoding step for {time.monotonic() - self._progress:.0f} s while requests wait"
        return out

    def idle(self) -> bool:
        with self._cv:
            return not (self._pending or self._active)

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, fail the waiting and running ones with Closed, end the worker."""
        with self._cv:
            self._closed = self._stop = True
            left = list(self._pending) + list(self._active)
            self._pending.clear()
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        for t in left:
            t.send("error", Closed("the server is shutting down"))

    def close(self) -> None:
        """Refuse new jobs (503); the queued and running ones go on (SIGTERM's drain)."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    # -- the worker thread ------------------------------------------------------------------

    def _admit(self) -> tuple[list[Ticket], list[Ticket]] | None:
        """Jobs to add and jobs to drop before the next step; None when the worker must end."""
        with self._cv:
            while not (self._pending or self._active or self._gone or self._stop):
                self._progress = time.monotonic()
                self._cv.wait()
            if self._stop:
                return None
            gone, self._gone = self._gone, []
            return self._take(), gone

    def _take(self) -> list[Ticket]:
        """The waiting jobs that join at the next step (the module docstring's order and limits)."""
        rows = len(self._owner)
        budget = min(self.max_prefill, self.prefill_per_row * rows)
        order = sorted(self._pending, key=lambda t: (0, 0) if t.passed >= self.patience else (1, len(t.job.context)))
        new, prefill = [], 0
        for t in order:
            job = t.job
            if new and prefill + len(job.context) > budget:
                break       # the rest joins at a later step: the running rows are not held up long
            if rows and rows + len(job.rows) > self.max_rows:
                break
            rows += len(job.rows)
            prefill += len(job.context)
            new.append(t)
        for t in new:
            self._pending.remove(t)
            self._active.append(t)
        if new:
            for t in self._pending:
                t.passed += 1
        return new

    def _work(self) -> None:
        while (work := self._admit()) is not None:
            try:
                self._iteration(*work)
            except Exception as e:      # a failure fails the running jobs, never the worker
                for t in list(self._active):
                    self._drop(t)
                    t.send("error", e)

    def _iteration(self, new: list[Ticket], gone: list[Ticket]) -> None:
        """Drop the cancelled, add the admitted, run one step, hand out its tokens."""
        dec = self.decoder
        for t in gone:
            self._drop(t)
        for t in new:
            self.stats["requests"] += 1
            if t.job.beam is not None:      # beam search decodes whole, between steps
                self._run_whole(t)
                continue
            try:
                for row, settings in zip(t.rows, t.job.rows):
                    r = dec.add(t.job.context, settings)
                    t.live[r] = row
                    self._owner[r] = (t, row)
            except ValueError as e:         # settings the decoder refuses fail their job only
                self._drop(t)
                t.send("error", e)
        if not len(dec):
            if gone:
                dec.step()                  # no live rows: this step only frees the cancelled ones
            return
        self.stats["max_rows_seen"] = max(self.stats["max_rows_seen"], len(dec))
        events = dec.step()
        self._progress = time.monotonic()
        self.stats["steps"] += 1
        touched = {}
        for ev in events:
            if ev.row not in self._owner:   # a row cancelled meanwhile
                continue
            t, row = self._owner[ev.row]
            self._on_token(t, ev, row)
            touched[id(t)] = t
        for t in touched.values():
            if not t.live:
                self._finish(t)

    def _on_token(self, t: Ticket, ev, row: _Row) -> None:
        job, eng = t.job, self.engine
        if ev.logprob is not None:
            row.logprob += ev.logprob
        ended = ev.finished is not None
        if ev.token != eng.eos or not ended:
            row.ids.append(ev.token)
            if job.logprobs is not None:
                row.tokens.append(eng.token_logprob(ev.token, ev.logprob, ev.top_logprobs))
            delta = row.text.push(ev.token)
        else:
            delta = ""
        if row.text.stopped and not ended:      # a stop string: the row leaves the batch now
            self.decoder.cancel(ev.row)
            ended = True
        if ended:
            row.finish = "stop" if ev.finished == "stop" or row.text.stopped else "length"
            delta += row.text.finish()
            del t.live[ev.row]
            del self._owner[ev.row]
        if job.streams_tokens and (delta or ended):
            lps = row.tokens[row.sent_lp:] if job.logprobs is not None else None
            row.sent_lp = len(row.tokens)
            t.send("delta", row.index, delta, lps, row.finish)

    def _finish(self, t: Ticket) -> None:
        job = t.job
        if job.rerank:
            hyps = [{"ids": r.ids, "logprob": r.logprob, "score": r.logprob, "finished": r.finish == "stop",
                     "row": r} for r in t.rows]
            rows = [h["row"] for h in self.engine.rank(job, hyps)[:job.n]]
        else:
            rows = t.rows
        choices = [Choice(r.text.text, r.finish, len(r.ids), r.tokens if job.logprobs is not None else None)
                   for r in rows]
        self._release(t)
        t.send("done", Reply(choices, len(job.context)))

    def _run_whole(self, t: Ticket) -> None:
        job, eng = t.job, self.engine
        try:
            hyps = eng.rank(job, eng.beam_hyps(job))[:job.n]
            reply = Reply([eng.choice(job, h["ids"], h["finished"]) for h in hyps], len(job.context))
        except Exception as e:
            self._release(t)
            t.send("error", e)
            return
        self._release(t)
        t.send("done", reply)

    def _drop(self, t: Ticket) -> None:
        for r in list(t.live):
            self.decoder.cancel(r)
            del self._owner[r]
        t.live.clear()
        self._release(t)

    def _release(self, t: Ticket) -> None:
        with self._cv:
            if t in self._active:
                self._active.remove(t)
                self._cost -= t.job.cost
