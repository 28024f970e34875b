"""The generation worker: a full queue refuses at once, a cancelled job frees its slot, events arrive in order."""

from __future__ import annotations

import queue
import time

import pytest

from llm.infer import GenerationSettings
from llm.infer.generate import Piece
from llm.serve.worker import STARTED, Event, Job, QueueFull, Worker
from tests.serve.conftest import tiny_model


def job(events: queue.Queue[Event], max_tokens: int) -> Job:
    settings = GenerationSettings(max_new_tokens=max_tokens, temperature=0.0)
    return Job([1, 2, 3], settings, (), events.put, deadline=time.monotonic() + 60)


def test_a_full_queue_refuses_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Worker, "_loop", lambda self: None)  # nothing takes jobs off the queue
    model, tokenizer = tiny_model(32)
    worker = Worker(model, tokenizer, slots=1, queue_size=2)
    events: queue.Queue[Event] = queue.Queue()
    worker.submit(job(events, 4))
    worker.submit(job(events, 4))
    with pytest.raises(QueueFull, match="2 requests are already waiting"):
        worker.submit(job(events, 4))
    assert worker.load()["queued"] == 2


def test_events_in_order_and_a_cancelled_job_frees_its_slot() -> None:
    model, tokenizer = tiny_model(2048)
    worker = Worker(model, tokenizer, slots=1, queue_size=4)
    try:
        long, short = queue.Queue[Event](), queue.Queue[Event]()
        long_job = job(long, 2000)
        worker.submit(long_job)
        worker.submit(job(short, 3))
        assert long.get(timeout=30) is STARTED and isinstance(long.get(timeout=30), Piece)
        long_job.cancel()
        assert short.get(timeout=60) is STARTED  # the one slot is free again
        got = [short.get(timeout=30) for _ in range(3)]
        assert [p.tokens for p in got] == [1, 2, 3] and got[-1].finish == "length"  # type: ignore[union-attr]
        assert worker.load()["cancelled"] == 1
    finally:
        worker.close()
