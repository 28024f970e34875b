"""From a checked request body to what the worker runs: the prompt's token ids, the generation settings and the
stop strings, or a 4xx naming the field.

Chat: the messages are rendered with the model directory's chat template (`chat_template.json`, or the plain
default "User: ...\\nAssistant: ...\\n" of llm/data/chat.py) followed by the assistant's prefix, and generation
stops where the model starts the next user turn: at end_of_turn + the user prefix without its trailing space
("\\nUser:" with the default), or at end_of_turn itself when it holds more than whitespace.

Context: the prompt's tokens plus max_tokens must fit the model's context (block_size). Without max_tokens, a
request gets the server's default (the max_tokens setting) cut to the room the prompt leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm.data.chat import ChatTemplate
from llm.infer.generate import GenerationSettings
from llm.model import GPT
from llm.serve.errors import APIError, shown
from llm.serve.schemas import ChatRequest, CompletionRequest, Message, Sampling
from llm.tokenizer import Tokenizer, TokenizerError


@dataclass(frozen=True)
class ServedModel:
    """The model behind the API, with what requests are checked against."""

    name: str
    model: GPT
    tokenizer: Tokenizer
    template: ChatTemplate
    default_max_tokens: int

    @property
    def context(self) -> int:
        return self.model.config.block_size

    def chat_stops(self) -> tuple[str, ...]:
        turn = self.template.end_of_turn
        return (turn,) if turn.strip() else (turn + self.template.user.rstrip(),)


@dataclass(frozen=True)
class Plan:
    """What the worker runs for one request; `prompt_text` is echoed back when a completion asks for it."""

    prompt: list[int]
    settings: GenerationSettings
    stop: tuple[str, ...]
    prompt_text: str


def completion_plan(request: CompletionRequest, served: ServedModel) -> Plan:
    check_common(request, served)
    text = request.text()
    if not text:
        raise APIError(400, "prompt is empty; give the text to continue", param="prompt")
    ids = encode(text, served.tokenizer, "prompt")
    limit = token_limit(request.max_tokens, len(ids), served, "prompt")
    return Plan(ids, settings(request, limit), tuple(request.stops()), text)


def chat_plan(request: ChatRequest, served: ServedModel) -> Plan:
    check_common(request, served)
    both = request.max_tokens is not None and request.max_completion_tokens is not None
    if both and request.max_tokens != request.max_completion_tokens:
        raise APIError(
            400,
            "give max_completion_tokens or max_tokens (its older name), not both with different values",
            param="max_completion_tokens",
        )
    ids = encode_chat(request.messages, served)
    asked = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    limit = token_limit(asked, len(ids), served, "messages")
    return Plan(ids, settings(request, limit), (*request.stops(), *served.chat_stops()), "")


def check_common(request: Sampling, served: ServedModel) -> None:
    if request.model != served.name:
        raise APIError(
            404,
            f"the model {shown(request.model)} does not exist; this server serves {served.name!r} (GET /v1/models)",
            param="model",
            code="model_not_found",
        )
    if request.stream_options is not None and not request.stream:
        raise APIError(400, "stream_options is only allowed when stream is true", param="stream_options")


def settings(request: Sampling, max_tokens: int) -> GenerationSettings:
    temperature = 1.0 if request.temperature is None else request.temperature
    top_p = None if request.top_p is None or request.top_p == 1 else request.top_p
    return GenerationSettings(max_tokens, temperature, None, top_p, 1.0, request.seed, context="error")


def token_limit(asked: int | None, prompt_tokens: int, served: ServedModel, prompt_param: str) -> int:
    """max_tokens checked against the room the prompt leaves in the context (the default cut to that room)."""
    context, room = served.context, served.context - prompt_tokens
    if room < 1:
        raise APIError(
            400,
            f"the {prompt_param} is {prompt_tokens} tokens but the model's context is {context} tokens, which leaves "
            "no room for a completion; shorten it",
            param=prompt_param,
            code="context_length_exceeded",
        )
    if asked is None:
        return min(served.default_max_tokens, room)
    if asked > room:
        raise APIError(
            400,
            f"the {prompt_param} ({prompt_tokens} tokens) and max_tokens ({asked}) need {prompt_tokens + asked} "
            f"tokens but the model's context is {context}; lower max_tokens to at most {room}",
            param="max_tokens",
            code="context_length_exceeded",
        )
    return asked


def encode_chat(messages: list[Message], served: ServedModel) -> list[int]:
    rendered = [{"role": m.template_role(), "content": m.text()} for m in messages]
    for i, message in enumerate(rendered):
        encode(message["content"], served.tokenizer, f"messages[{i}].content")
    try:
        return served.tokenizer.encode(served.template.generation_prompt(rendered))
    except (TokenizerError, UnicodeError) as e:
        raise APIError(
            400,
            f"this model's tokenizer cannot encode its chat template ({e}); use POST /v1/completions, or give the "
            "model directory a chat_template.json whose prefixes it can encode",
            param="messages",
            code="chat_template_unencodable",
        ) from None


def encode(text: str, tokenizer: Tokenizer, param: str) -> list[int]:
    """The ids of `text`, or a 400 naming the first character the tokenizer cannot encode."""
    for index, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            raise APIError(
                400, f"{param}: character {index} is a lone surrogate ({ascii(char)}), not text", param=param
            )
    try:
        return tokenizer.encode(text)
    except TokenizerError:
        index, char = first_unencodable(text, tokenizer)
        raise APIError(
            400,
            f"{param}: character {ascii(char)} (U+{ord(char):04X}) at index {index} cannot be encoded by this model's "
            f"{getattr(tokenizer, 'kind', '')} tokenizer (it knows only the characters of its training text); "
            "remove or replace it",
            param=param,
            code="unencodable_character",
        ) from None


def first_unencodable(text: str, tokenizer: Tokenizer) -> tuple[int, str]:
    known: set[str] = set()
    for index, char in enumerate(text):
        if char in known:
            continue
        try:
            tokenizer.encode(char)
        except TokenizerError:
            return index, char
        known.add(char)
    return 0, text[:1]
