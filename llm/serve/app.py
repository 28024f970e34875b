"""The OpenAI-compatible API over one model: `build_app(served, limits)` -> a FastAPI app.

    GET  /health                 status, the model's name, requests queued and running (open without a key)
    GET  /v1/models              the one model served (its name: the model directory's folder, or name=)
    POST /v1/completions         continue a prompt
    POST /v1/chat/completions    answer messages, rendered with the model directory's chat template

Both POST routes stream server-sent events with "stream": true. Each request waits for the generation worker
(llm/serve/worker.py); while it waits or runs, a client that goes away cancels it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from llm.infer.generate import Piece
from llm.serve.errors import (
    APIError,
    json_response,
    on_api_error,
    on_http_error,
    on_unexpected_error,
    on_validation_error,
    shown,
)
from llm.serve.guard import Guard
from llm.serve.plan import Plan, ServedModel, chat_plan, completion_plan
from llm.serve.responses import DONE, Reply, error_event
from llm.serve.schemas import ChatRequest, CompletionRequest
from llm.serve.settings import Limits
from llm.serve.worker import Event, Failed, Job, QueueFull, Started, Worker

POLL_S = 0.25  # how often a waiting request looks whether its client is still there


class ClientGone(Exception):
    """The client closed the connection while its request waited."""


def build_app(served: ServedModel, limits: Limits) -> FastAPI:
    worker = Worker(served.model, served.tokenizer, limits.slots, limits.queue_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        worker.close()

    app = FastAPI(title="llm serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.worker = worker
    app.add_middleware(Guard, api_key=limits.api_key, max_body_bytes=limits.max_body_bytes)
    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected_error)
    add_routes(app, served, Answerer(worker, limits))
    return app


def add_routes(app: FastAPI, served: ServedModel, answerer: Answerer) -> None:
    started = int(time.time())
    card = {"id": served.name, "object": "model", "created": started, "owned_by": "llm"}

    @app.get("/health")
    async def health() -> Response:
        load = answerer.worker.load()
        return json_response({"status": "ok", "model": served.name, **load, "slots": answerer.limits.slots})

    @app.get("/v1/models")
    async def models() -> Response:
        return json_response({"object": "list", "data": [card]})

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> Response:
        if model_id != served.name:
            raise APIError(404, f"the model {shown(model_id)} does not exist", param="model", code="model_not_found")
        return json_response(card)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        plan = completion_plan(body, served)
        reply = Reply(served.name, chat=False)
        echo = plan.prompt_text if body.echo else ""
        return await answerer.answer(request, plan, reply, bool(body.stream), body.include_usage(), echo)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request) -> Response:
        plan = chat_plan(body, served)
        reply = Reply(served.name, chat=True)
        return await answerer.answer(request, plan, reply, bool(body.stream), body.include_usage())


@dataclass(frozen=True)
class Answerer:
    """Queues a request's plan on the worker and turns its events into a response, whole or streamed."""

    worker: Worker
    limits: Limits

    async def answer(
        self, request: Request, plan: Plan, reply: Reply, stream: bool, include_usage: bool, echo: str = ""
    ) -> Response:
        events: asyncio.Queue[Event] = asyncio.Queue()
        job = self.submit(plan, events)
        try:
            await self.wait_for_start(request, events, job)
            if stream:
                chunks = stream_chunks(events, reply, len(plan.prompt), include_usage, echo)
                return EventStream(chunks, on_close=job.cancel)
            return json_response(await whole_answer(request, events, reply, len(plan.prompt), echo))
        except ClientGone:
            job.cancel()
            return Response(status_code=499)  # nobody reads it
        except BaseException:
            job.cancel()
            raise

    def submit(self, plan: Plan, events: asyncio.Queue[Event]) -> Job:
        loop = asyncio.get_running_loop()

        def deliver(event: Event) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        deadline = time.monotonic() + self.limits.request_timeout_s
        job = Job(plan.prompt, plan.settings, plan.stop, deliver, deadline)
        try:
            self.worker.submit(job)
        except QueueFull as e:
            raise busy(f"{e} (queue_size={self.limits.queue_size})") from None
        return job

    async def wait_for_start(self, request: Request, events: asyncio.Queue[Event], job: Job) -> None:
        """Returns once the worker has started the job; ClientGone, or 429 past request_timeout_s, before that."""
        event = await next_event(request, events, job.deadline)
        if event is None:
            waited = f"the request waited request_timeout_s={self.limits.request_timeout_s} without starting"
            raise busy(waited)
        assert isinstance(event, Started), event


async def next_event(request: Request, events: asyncio.Queue[Event], deadline: float | None = None) -> Event | None:
    """The job's next event; None once `deadline` (time.monotonic) has passed; ClientGone if the client has gone."""
    while True:
        try:
            return await asyncio.wait_for(events.get(), POLL_S)
        except TimeoutError:
            if await request.is_disconnected():
                raise ClientGone() from None
            if deadline is not None and time.monotonic() > deadline:
                return None


def busy(why: str) -> APIError:
    return APIError(429, f"the server is busy: {why}; retry later", type="rate_limit_error", code="rate_limit_exceeded")


async def whole_answer(
    request: Request, events: asyncio.Queue[Event], reply: Reply, prompt_tokens: int, echo: str
) -> dict[str, Any]:
    parts = [echo]
    while True:
        event = await next_event(request, events)
        if isinstance(event, Failed):
            raise APIError(500, event.message, type="server_error")
        assert isinstance(event, Piece), event
        parts.append(event.text)
        if event.finish is not None:
            return reply.whole("".join(parts), event.finish, prompt_tokens, event.tokens)


async def stream_chunks(
    events: asyncio.Queue[Event], reply: Reply, prompt_tokens: int, include_usage: bool, echo: str
) -> AsyncIterator[bytes]:
    if reply.chat:
        yield reply.chunk("", first=True)
    elif echo:
        yield reply.chunk(echo)
    while True:
        event = await events.get()
        if isinstance(event, Failed):
            yield error_event(event.message)
            break
        assert isinstance(event, Piece), event
        if event.text:
            yield reply.chunk(event.text)
        if event.finish is not None:
            yield reply.chunk(None, event.finish)
            if include_usage:
                yield reply.usage_chunk(prompt_tokens, event.tokens)
            break
    yield DONE


class EventStream(StreamingResponse):
    """Server-sent events; `on_close` runs however the stream ends (finished, failed, or the client gone)."""

    media_type = "text/event-stream"

    def __init__(self, chunks: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(chunks, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()
