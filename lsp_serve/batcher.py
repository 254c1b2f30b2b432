"""Dynamic batching: requests wait a few milliseconds in a bounded queue, then one worker thread
runs the oldest request together with every queued request of the same batch key, up to
`max_batch`, as one model call.

The wait starts when a request is there and the worker is free, and ends when no request has
arrived for `wait_s` (a burst is over), when `max_batch` are queued, or after `max_wait_s`. A
lone request so waits `wait_s` only; clients that were answered together by one batch and send
again at once (their requests trickle in over some milliseconds) join the requests that queued
meanwhile in the next batch, instead of splitting into a batch of the queued and one of them.

- The model runs off the event loop, one call at a time (a single worker thread), so the server
  keeps answering (health, refusals, streams) while it generates.
- The queue is bounded: `submit` raises QueueFull at once when `max_queue` requests are waiting,
  so an overloaded server refuses (429) instead of letting clients hang.
- A request whose future is already done (timed out, client gone) is dropped before it runs and
  its result is discarded if it was running: nothing leaks from one request into the next.
- Requests that wait while a batch runs are gathered for the next one, so under load batches
  fill up without waiting the window again.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field


class QueueFull(Exception):
    pass


class Closed(Exception):
    pass


@dataclass
class _Item:
    key: object
    payload: object
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    t: float = field(default_factory=time.monotonic)


def _settle(fut: asyncio.Future, result) -> None:
    if fut.done():  # timed out or cancelled meanwhile: nobody is waiting for it
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)


def _deliver(it: _Item, result) -> None:
    try:
        it.loop.call_soon_threadsafe(_settle, it.future, result)
    except RuntimeError:  # the event loop is closed: the server is gone
        pass


class Batcher:
    """`run_batch(payloads) -> results` (same length, or raises) is called on the worker thread."""

    def __init__(self, run_batch, max_batch: int = 32, wait_s: float = 0.005, max_queue: int = 128,
                 max_wait_s: float | None = None):
        max_wait_s = 10 * wait_s if max_wait_s is None else max_wait_s
        if max_batch < 1 or max_queue < 1 or not 0 <= wait_s <= max_wait_s:
            raise ValueError("max_batch and max_queue must be >= 1 and 0 <= wait <= max wait")
        self.run_batch, self.max_batch, self.max_queue = run_batch, max_batch, max_queue
        self.wait_s, self.max_wait_s = wait_s, max_wait_s
        self._queue: deque[_Item] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._free_since = 0.0           # when the worker last finished a batch
        self._thread: threading.Thread | None = None
        self.stats = {"batches": 0, "requests": 0, "refused": 0, "running": 0, "max_batch_seen": 0}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            self._cv.notify_all()
        for it in left:
            _deliver(it, Closed("the server is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout)

    def queued(self) -> int:
        return len(self._queue)

    def submit(self, key, payload) -> asyncio.Future:
        """Queue one request (from the event loop); its future gets the result."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cv:
            if self._closed:
                raise Closed("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                self.stats["refused"] += 1
                raise QueueFull(f"{len(self._queue)} requests are already waiting (max_queue {self.max_queue})")
            self._queue.append(_Item(key, payload, fut, loop))
            self._cv.notify()
        return fut

    def _take(self) -> list[_Item] | None:
        """The next batch: wait for a request, then for the burst to end (see the module
        docstring); take the oldest and the queued ones with its key."""
        with self._cv:
            while True:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return None
                opened = max(self._queue[0].t, self._free_since)
                while len(self._queue) < self.max_batch and not self._closed:
                    quiet = max(self._queue[-1].t, self._free_since) + self.wait_s
                    left = min(opened + self.max_wait_s, quiet) - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                live = [it for it in self._queue if not it.future.done()]
                if not live:
                    self._queue.clear()
                    continue
                key = live[0].key
                batch = [it for it in live if it.key == key][:self.max_batch]
                taken = {id(it) for it in batch}
                self._queue = deque(it for it in live if id(it) not in taken)
                return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            self.stats["running"] = len(batch)
            try:
                results = self.run_batch([it.payload for it in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} requests")
            except Exception as e:  # one bad batch fails its requests, never the worker
                results = [e] * len(batch)
            self.stats["running"] = 0
            self._free_since = time.monotonic()
            self.stats["batches"] += 1
            self.stats["requests"] += len(batch)
            self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], len(batch))
            for it, res in zip(batch, results):
                _deliver(it, res)
