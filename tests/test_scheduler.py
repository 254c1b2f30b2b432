"""The scheduler's admission order, in process without a model: which waiting jobs join the
batch at the next step (lsp_serve.scheduler's docstring)."""
from __future__ import annotations

from types import SimpleNamespace

from lsp_model.generate import RowSettings
from lsp_serve.engine import Job
from lsp_serve.scheduler import Scheduler, Ticket


def _ticket(length: int, rows: int = 1) -> Ticket:
    job = Job(list(range(1, length + 1)), None, [RowSettings(max_new_tokens=4)] * rows, rows, [], False, False,
              None, True)
    return Ticket(job, None, SimpleNamespace(tok=None))


def _scheduler(running: int, **kw) -> Scheduler:
    s = Scheduler(SimpleNamespace(), decoder=object(), **kw)
    s._owner = {r: None for r in range(running)}       # rows decoding now
    return s


def _take(s: Scheduler, lengths: list[int]) -> list[int]:
    tickets = [_ticket(n) for n in lengths]
    s._pending.extend(tickets)
    return [len(t.job.context) for t in s._take()]


def test_an_idle_batch_takes_the_shortest_job_alone():
    s = _scheduler(0)
    assert _take(s, [50, 12, 30, 12]) == [12]
    assert [len(t.job.context) for t in s._pending] == [50, 30, 12]     # the rest keeps its order


def test_the_prefill_budget_grows_with_the_running_rows_up_to_max_prefill():
    assert _take(_scheduler(4, prefill_per_row=8), [30, 10, 20, 5]) == [5, 10]          # 32 tokens
    assert _take(_scheduler(6, prefill_per_row=8), [30, 10, 20, 5]) == [5, 10, 20]      # 48 tokens
    assert _take(_scheduler(6, prefill_per_row=8, max_prefill=20), [30, 10, 20, 5]) == [5, 10]
    assert _take(_scheduler(4, prefill_per_row=8), [100, 90]) == [90]                   # one at least


def test_rows_never_pass_max_rows():
    s = _scheduler(6, prefill_per_row=100, max_rows=8)
    s._pending.extend([_ticket(3, rows=2), _ticket(4, rows=2)])
    assert [len(t.job.rows) for t in s._take()] == [2]


def test_a_job_passed_over_patience_times_goes_first():
    s = _scheduler(0, patience=2)
    assert _take(s, [40, 5]) == [5]
    assert _take(s, [6]) == [6]                 # the 40-token job was passed over twice
    assert _take(s, [7]) == [40]
    assert _take(s, []) == [7]
