"""Response bodies in OpenAI's shapes: whole completions, and the chunks of a stream (server-sent events).

A stream is `data: <chunk JSON>\\n\\n` per piece, a last chunk with finish_reason, a usage chunk (choices [])
when stream_options.include_usage asks for it, then `data: [DONE]\\n\\n`. Chat chunks carry a `delta`; the
first one holds the role.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

DONE = b"data: [DONE]\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


@dataclass(frozen=True)
class Reply:
    """What every body of one request shares: its id, creation time, the model's name and the endpoint."""

    model: str
    chat: bool
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex}")

    def head(self, object_name: str) -> dict[str, Any]:
        return {"id": self.id, "object": object_name, "created": self.created, "model": self.model}

    def whole(self, text: str, finish: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        """The body of a non-streamed answer."""
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None}
            head = self.head("chat.completion")
        else:
            choice = {"index": 0, "text": text, "logprobs": None}
            head = self.head("text_completion")
        return {
            **head,
            "choices": [{**choice, "finish_reason": finish}],
            "usage": usage(prompt_tokens, completion_tokens),
        }

    def chunk(self, text: str | None, finish: str | None = None, *, first: bool = False) -> bytes:
        """One event of a stream: `text` new (None: nothing, as in the last chunk), `finish` on the last one."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": text or ""} if first else {}
            if text is not None and not first:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta}
            head = self.head("chat.completion.chunk")
        else:
            choice = {"index": 0, "text": text or ""}
            head = self.head("text_completion")
        return sse({**head, "choices": [{**choice, "logprobs": None, "finish_reason": finish}]})

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return sse({**self.head(kind), "choices": [], "usage": usage(prompt_tokens, completion_tokens)})


def error_event(message: str) -> bytes:
    """A failure after the stream began (status 200 is already sent): an error event, then the end."""
    return sse({"error": {"message": message, "type": "server_error", "param": None, "code": None}})
