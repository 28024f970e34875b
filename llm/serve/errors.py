"""Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, for every answer that is not 2xx.

A request a client can send is answered 4xx: bad JSON or fields (400, `param` names the field), a missing or
wrong API key (401), an unknown model (404, code model_not_found), an unknown route (404) or method (405), a
body over the size limit (413), a full queue (429, code rate_limit_exceeded). 500 is left for bugs.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from llm.serve.schemas import FIELDS

INVALID = "invalid_request_error"
SHOWN_CHARS = 80  # of a value quoted back in a message


class APIError(Exception):
    """An answer in OpenAI's error shape: status, message, and the type, param and code fields."""

    def __init__(
        self, status: int, message: str, *, type: str = INVALID, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        headers = {"Retry-After": "1"} if self.status == 429 else None
        return json_response(self.body(), self.status, headers)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON with non-ASCII escaped, so that any text a client sent (lone surrogates too) can be quoted back."""
    return Response(json.dumps(data), status, headers, media_type="application/json")


def shown(value: Any) -> str:
    """A value quoted back to the client: its repr, shortened."""
    text = ascii(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def param_path(loc: tuple[Any, ...], fields: frozenset[str], keep_last: bool = False) -> str | None:
    """("body", "messages", 0, "role") -> "messages[0].role"; None for the body as a whole. Parts that are not
    field names (pydantic's labels of union members, such as "list[str]") are left out, but for `keep_last`."""
    path = ""
    parts = loc[1:] if loc and loc[0] == "body" else loc
    for i, part in enumerate(parts):
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in fields or (keep_last and i == len(parts) - 1):
            path += f"{'.' if path else ''}{part}"
    return path or None


KINDS = {
    "str": "a text",
    "list[str]": "a list of texts",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
}


def kind_of(label: str) -> str:
    """A union member's label in words: "constrained-int" -> "an integer", "list[TextPart]" -> "a list of ..."."""
    label = label.removeprefix("constrained-")
    return KINDS.get(label, f"a list of {label[5:-1]}" if label.startswith("list[") else label)


def union_labels(first: dict[str, Any], errors: list[Any], fields: frozenset[str]) -> list[str]:
    """The labels of the union members `first` failed (it ends in one), or [] when it is no union's error."""
    loc = tuple(first.get("loc", ()))
    if len(loc) < 2 or isinstance(loc[-1], int) or loc[-1] in fields:
        return []
    members = [tuple(e.get("loc", ())) for e in errors]
    return list(
        dict.fromkeys(str(m[len(loc) - 1]) for m in members if m[: len(loc) - 1] == loc[:-1] and len(m) >= len(loc))
    )


def validation_error(errors: list[Any], fields: frozenset[str]) -> APIError:
    """The first of pydantic's errors as one 400: which field, what is wrong, and the value given."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    kind = first.get("type", "")
    param = param_path(tuple(first.get("loc", ())), fields, keep_last=kind == "extra_forbidden")
    if param is None or kind == "json_invalid":
        return body_error(first)
    if kind == "extra_forbidden":
        return APIError(400, f"unrecognized request argument supplied: {param}", param=param)
    if kind == "missing":
        return APIError(400, f"you must provide {param}", param=param)
    labels = union_labels(first, errors, fields)
    if labels:  # a value that matched no member of a union: the deepest error, or what the members are
        loc = tuple(first["loc"])[:-1]
        related = [e for e in errors if tuple(e.get("loc", ()))[: len(loc)] == loc]
        deepest = max(related, key=lambda e: len(e["loc"]))
        if len(deepest["loc"]) > len(first["loc"]):
            return validation_error([deepest], fields)
        value = first.get("input")
        kinds = " or ".join(dict.fromkeys(kind_of(label) for label in labels))
        return APIError(400, f"{param}: must be {kinds} (got {shown(value)})", param=param)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return APIError(400, f"{param}: {message} (got {shown(first.get('input'))})", param=param)


def body_error(error: dict[str, Any]) -> APIError:
    kind = error.get("type")
    if kind == "json_invalid":
        where = error.get("loc", ("body", "?"))[-1]
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        return APIError(400, f"the request body is not valid JSON ({reason} at character {where})")
    if kind == "missing":
        return APIError(400, "the request body is empty; send a JSON object (Content-Type: application/json)")
    return APIError(400, "the request body must be a JSON object (Content-Type: application/json)")


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


async def on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_error(list(exc.errors()), FIELDS).response()


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (unknown route, wrong method, an unreadable body) in OpenAI's shape."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"invalid URL ({request.method} {request.url.path}); the routes are {ROUTES}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    elif exc.status_code == 400:
        message = "the request body cannot be read as JSON text (is it UTF-8?)"
    else:
        message = str(exc.detail)
    response = APIError(exc.status_code, message).response()
    response.headers.update(exc.headers or {})
    return response


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug: 500 in OpenAI's shape (the traceback goes to the server's log)."""
    return APIError(500, f"internal error ({type(exc).__name__}); see the server's log", type="server_error").response()


ROUTES = "GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions"
