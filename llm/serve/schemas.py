"""The request bodies, with OpenAI's field names, checked as OpenAI checks them.

Types are strict (no "5" for 5, no true for 1, no NaN) and unknown fields are refused, as OpenAI does. Fields a
small local model cannot honour are accepted only at their neutral value (n=1, presence_penalty=0, logprobs
off, ...), and any other value is a 400 that names the field. `user` is accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

MAX_STOP = 4
MAX_SEED = 2**63 - 1


def is_neutral(value: Any, field: str | None) -> bool:
    """null, false, {}, [], tool_choice "none", best_of 1: the values that ask for nothing this server lacks."""
    if value is None or value is False or (isinstance(value, dict | list) and not value):
        return True
    return (field == "tool_choice" and value == "none") or (field == "best_of" and type(value) is int and value == 1)


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class StreamOptions(Strict):
    include_usage: bool = False


class Sampling(Strict):
    """The fields both endpoints share."""

    model: str
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None  # default 1
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None  # default 1
    n: Annotated[int, Field(ge=1)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logit_bias: Any = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def at_most_four_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings are allowed")
        return stop

    @field_validator("n")
    @classmethod
    def one_choice(cls, n: int | None) -> int | None:
        if n is not None and n != 1:
            raise ValueError("this server returns one choice per request; use n=1 (or leave n out)")
        return n

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def no_penalty(cls, value: float | None) -> float | None:
        if value:
            raise ValueError("penalties are not supported by this server; use 0 (or leave it out)")
        return value

    @field_validator(
        "logit_bias", "suffix", "logprobs", "best_of", "top_logprobs", "tools", "tool_choice", check_fields=False
    )
    @classmethod
    def neutral(cls, value: Any, info: ValidationInfo) -> Any:
        """Fields this server cannot honour: only their neutral values (null, false, {}, [], best_of=1, "none")."""
        if not is_neutral(value, info.field_name):
            raise ValueError("not supported by this server; leave it out")
        return value

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(Sampling):
    """POST /v1/completions: `prompt` is one text (or a list holding one text)."""

    prompt: str | list[str]
    max_tokens: Annotated[int, Field(ge=1)] | None = None  # default: the server's max_tokens setting
    echo: bool | None = None
    suffix: Any = None
    logprobs: Any = None
    best_of: Any = None

    @field_validator("prompt")
    @classmethod
    def one_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError(
                f"this server completes one prompt per request; give one text, got a list of {len(prompt)}"
            )
        return prompt

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class TextPart(Strict):
    type: Literal["text"]
    text: str


class Message(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def template_role(self) -> str:
        """The chat template's role: a "developer" message is a system message."""
        return "system" if self.role == "developer" else self.role


class ResponseFormat(Strict):
    type: Literal["text"]


class ChatRequest(Sampling):
    """POST /v1/chat/completions: `messages` rendered with the model directory's chat template."""

    messages: Annotated[list[Message], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: Any = None
    top_logprobs: Any = None
    response_format: ResponseFormat | None = None
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None


#: every field name of every request body (what an error's `param` is made of)
FIELDS = frozenset(
    name
    for schema in (StreamOptions, CompletionRequest, TextPart, Message, ResponseFormat, ChatRequest)
    for name in schema.model_fields
)
