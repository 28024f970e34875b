"""What every request passes before it reaches a route: the API key, and the size of its body.

With an API key set, a /v1 route answers 401 unless the request carries `Authorization: Bearer <key>` (/health
stays open). A body over max_body_bytes is answered 413 without being kept in memory; the body of any other
request is read here once and handed on.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm.serve.errors import APIError

DRAIN_LIMIT = 64 * 2**20  # bytes of an oversized body read and dropped, so the client sees the 413 (not a reset)


class Guard:
    """ASGI middleware: API key first (401), then the body's size (413)."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int) -> None:
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.key_refusal(scope)
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        body = await read_body(receive, self.max_body_bytes)
        if body is None:
            too_big = APIError(
                413,
                f"the request body is larger than this server's limit of {self.max_body_bytes} bytes "
                "(max_body_bytes); send a shorter prompt",
                code="request_too_large",
            )
            await too_big.response()(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)

    def key_refusal(self, scope: Scope) -> APIError | None:
        if not self.api_key or not scope["path"].startswith("/v1"):
            return None
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = given.partition(" ")
        if not given:
            message = "you didn't provide an API key; send it in the header Authorization: Bearer <key>"
        elif scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            message = "incorrect API key provided; send the server's key in the header Authorization: Bearer <key>"
        else:
            return None
        return APIError(401, message, code="invalid_api_key")


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None when it is over `limit` bytes (the rest is read up to DRAIN_LIMIT and dropped)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client has gone: nothing more will come
            return b"".join(chunks)
        size += len(message.get("body", b""))
        if size <= limit:
            chunks.append(message.get("body", b""))
        if not message.get("more_body", False) or size > DRAIN_LIMIT:
            return b"".join(chunks) if size <= limit else None


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read already, then whatever the connection says next (a disconnect)."""
    given = False

    async def again() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
