"""The generation queue: one thread owns the model and serves every request.

Requests wait in a bounded queue (`queue_size`; a full queue refuses at once). The thread runs up to `slots`
requests at a time, one new token of each in turn, so a short request is not stuck behind a long one. Each
request's events go to its `deliver` callback (from this thread): STARTED when its generation begins, then one
Piece per new token (text, tokens so far, and on the last one why it ended), or a Failed. A request whose client
has gone is cancelled (`Job.cancel`) and dropped at its next token, freeing its slot; one that runs past its
deadline ends there with finish reason "length".
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from llm.infer.generate import GenerationSettings, Piece, stream_pieces
from llm.model import GPT
from llm.tokenizer import Tokenizer

log = logging.getLogger(__name__)
IDLE_POLL_S = 0.5  # how often an idle worker looks up to see whether it should stop


@dataclass(frozen=True)
class Started:
    """The request left the queue: its generation begins."""


@dataclass(frozen=True)
class Failed:
    """Generation raised (a bug): the request ends with a server error."""

    message: str


STARTED = Started()
Event = Started | Piece | Failed


class QueueFull(Exception):
    """No room in the queue: the server is busy."""


@dataclass
class Job:
    """One request's generation: the prompt's ids, how to continue it, and where its events go."""

    prompt: list[int]
    settings: GenerationSettings
    stop: tuple[str, ...]
    deliver: Callable[[Event], None]
    deadline: float  # time.monotonic() past which generation ends ("length")
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Called when the client has gone or stopped waiting; harmless once the job has ended."""
        self.cancelled.set()


@dataclass
class Running:
    job: Job
    pieces: Iterator[Piece]


class Worker:
    """The one thread that generates; `submit` queues a job, `load` says how busy it is."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, slots: int, queue_size: int) -> None:
        self.model, self.tokenizer, self.slots = model, tokenizer, slots
        self._waiting: queue.Queue[Job] = queue.Queue(maxsize=queue_size)
        self._running: list[Running] = []
        self._closed = threading.Event()
        self._cancelled = 0  # jobs dropped because their client went away (written by the worker thread only)
        self._thread = threading.Thread(target=self._loop, name="llm-serve-generation", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queues `job`; QueueFull when queue_size jobs are already waiting."""
        if self._closed.is_set():
            raise QueueFull("the server is shutting down")
        try:
            self._waiting.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self._waiting.maxsize} requests are already waiting") from None

    def load(self) -> dict[str, int]:
        """Requests waiting and generating now, and those cancelled so far (read from another thread: a snapshot)."""
        return {"queued": self._waiting.qsize(), "running": len(self._running), "cancelled": self._cancelled}

    def close(self, timeout: float = 5.0) -> None:
        self._closed.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._closed.is_set():
            self._admit()
            for running in list(self._running):
                self._advance(running)
        for running in self._running:
            running.job.cancel()

    def _admit(self) -> None:
        """Starts waiting jobs while there are free slots (waits a little for one when nothing runs)."""
        while len(self._running) < self.slots:
            try:
                job = self._waiting.get(timeout=IDLE_POLL_S) if not self._running else self._waiting.get_nowait()
            except queue.Empty:
                return
            if job.cancelled.is_set():
                self._cancelled += 1
                continue
            pieces = stream_pieces(self.model, self.tokenizer, job.prompt, job.settings, job.stop, stop_at_eot=True)
            self._running.append(Running(job, pieces))
            self._send(job, STARTED)

    def _advance(self, running: Running) -> None:
        """One more token of one job; a cancelled or finished job leaves its slot."""
        job = running.job
        if job.cancelled.is_set():
            self._cancelled += 1
            self._drop(running)
            return
        try:
            piece = next(running.pieces)
        except Exception as e:
            log.exception("generation failed")
            self._drop(running)  # before the client hears: once it has its answer, the slot is free
            self._send(job, Failed(f"generation failed ({type(e).__name__}); see the server's log"))
            return
        if piece.finish is None and time.monotonic() > job.deadline:
            piece = Piece(piece.text, piece.tokens, "length")
        if piece.finish is not None:
            self._drop(running)
        self._send(job, piece)

    def _drop(self, running: Running) -> None:
        self._running.remove(running)
        close = getattr(running.pieces, "close", None)
        if close is not None:
            close()

    def _send(self, job: Job, event: Event) -> None:
        try:
            job.deliver(event)
        except RuntimeError:  # the request's event loop is gone
            job.cancel()
