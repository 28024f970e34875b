"""The API in-process (FastAPI's TestClient): answers in OpenAI's shapes, and every bad request a 4xx in OpenAI's
error shape whose `param` names the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llm.data.chat import load_chat_template
from llm.export import load_model_dir
from llm.serve.app import build_app
from llm.serve.plan import ServedModel
from llm.serve.settings import Limits
from llm.serve.worker import QueueFull
from tests.serve.conftest import expected, expected_chat

KEY = "sk-test"


def client_for(model_dir: Path, **limits: Any) -> TestClient:
    model, tokenizer = load_model_dir(model_dir)
    served = ServedModel("tiny", model, tokenizer, load_chat_template(model_dir), default_max_tokens=16)
    return TestClient(build_app(served, Limits(**limits)))


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with client_for(model_dir, max_body_bytes=10_000) as c:
        yield c


def events(text: str) -> list[Any]:
    """The data of each server-sent event: parsed JSON, or the text [DONE]."""
    out = []
    for block in text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            data = block.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def post(client: TestClient, route: str, body: Any) -> Any:
    """POST `body` as JSON with non-ASCII escaped (so lone surrogates can be sent)."""
    return client.post(route, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def assert_error(response: Any, status: int, param: str | None, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"], body
    assert error["param"] == param, body
    if code is not None:
        assert error["code"] == code, body
    return error


# --- answers -------------------------------------------------------------------------------------------------


def test_health_and_models(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny"
    assert {"queued", "running", "cancelled", "slots"} <= set(health)
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny"]
    assert client.get("/v1/models/tiny").json()["id"] == "tiny"
    assert_error(client.get("/v1/models/other"), 404, "model", "model_not_found")


def test_a_completion_is_the_greedy_continuation_with_usage(client: TestClient, model_dir: Path) -> None:
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 12, "temperature": 0}
    answer = client.post("/v1/completions", json=body).json()
    assert answer["object"] == "text_completion" and answer["model"] == "tiny" and answer["id"].startswith("cmpl-")
    (choice,) = answer["choices"]
    assert choice["text"] == expected(model_dir, "Hello", 12)
    assert choice["finish_reason"] == "length" and choice["index"] == 0
    assert answer["usage"] == {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17}


def test_a_stop_string_ends_the_completion_with_finish_reason_stop(client: TestClient, model_dir: Path) -> None:
    full = expected(model_dir, "Hello", 30)
    stop = full[8:10]
    cut = full[: full.find(stop)]
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 30, "temperature": 0, "stop": [stop]}
    (choice,) = client.post("/v1/completions", json=body).json()["choices"]
    assert choice == {"index": 0, "text": cut, "logprobs": None, "finish_reason": "stop"}
    streamed = events(client.post("/v1/completions", json={**body, "stream": True}).text)
    assert "".join(e["choices"][0]["text"] for e in streamed[:-1]) == cut
    assert streamed[-2]["choices"][0]["finish_reason"] == "stop"


def test_echo_puts_the_prompt_first(client: TestClient, model_dir: Path) -> None:
    body = {"model": "tiny", "prompt": "Hi", "max_tokens": 4, "temperature": 0, "echo": True}
    assert client.post("/v1/completions", json=body).json()["choices"][0]["text"] == "Hi" + expected(model_dir, "Hi", 4)


def test_a_streamed_completion_ends_with_finish_reason_usage_and_done(client: TestClient, model_dir: Path) -> None:
    body = {"model": "tiny", "prompt": ["Hello"], "max_tokens": 12, "temperature": 0, "stream": True}
    response = client.post("/v1/completions", json={**body, "stream_options": {"include_usage": True}})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")
    chunks = events(response.text)
    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["completion_tokens"] == 12
    assert chunks[-3]["choices"][0]["finish_reason"] == "length"
    assert all(c["object"] == "text_completion" for c in chunks[:-1])
    assert "".join(c["choices"][0]["text"] for c in chunks[:-2]) == expected(model_dir, "Hello", 12)


def test_a_chat_answer_uses_the_template_and_stops_at_the_next_user_turn(client: TestClient, model_dir: Path) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    body = {"model": "tiny", "messages": messages, "max_completion_tokens": 20, "temperature": 0}
    answer = client.post("/v1/chat/completions", json=body).json()
    assert answer["object"] == "chat.completion" and answer["id"].startswith("chatcmpl-")
    (choice,) = answer["choices"]
    assert choice["message"] == {"role": "assistant", "content": expected_chat(model_dir, messages, 20)}
    prompt = "System: Be brief.\nUser: Hi there\nAssistant: "
    assert answer["usage"]["prompt_tokens"] == len(prompt)
    chunks = events(client.post("/v1/chat/completions", json={**body, "stream": True}).text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks[:-1])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert text == choice["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == choice["finish_reason"]


def test_content_as_text_parts_and_developer_role(client: TestClient, model_dir: Path) -> None:
    parts = [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]
    messages = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": parts}]
    body = {"model": "tiny", "messages": messages, "max_tokens": 8, "temperature": 0}
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    content = client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert content == expected_chat(model_dir, plain, 8)


def test_without_max_tokens_a_request_gets_the_default_cut_to_the_room_left(client: TestClient) -> None:
    body = {"model": "tiny", "prompt": "x" * 250, "temperature": 0}
    assert client.post("/v1/completions", json=body).json()["usage"]["completion_tokens"] == 6
    short = client.post("/v1/completions", json={**body, "prompt": "x"}).json()
    assert short["usage"]["completion_tokens"] == 16


def test_a_seed_repeats_a_sampled_completion(client: TestClient) -> None:
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 10, "temperature": 1.5, "top_p": 0.9, "seed": 7}
    first, again = (client.post("/v1/completions", json=body).json()["choices"][0]["text"] for _ in range(2))
    assert first == again


# --- bad requests --------------------------------------------------------------------------------------------

OK = {"model": "tiny", "prompt": "Hello", "max_tokens": 4}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}

BAD_COMPLETIONS = {
    "max-tokens-zero": ({**OK, "max_tokens": 0}, 400, "max_tokens", None),
    "max-tokens-negative": ({**OK, "max_tokens": -1}, 400, "max_tokens", None),
    "max-tokens-text": ({**OK, "max_tokens": "5"}, 400, "max_tokens", None),
    "max-tokens-float": ({**OK, "max_tokens": 5.0}, 400, "max_tokens", None),
    "max-tokens-bool": ({**OK, "max_tokens": True}, 400, "max_tokens", None),
    "max-tokens-over-context": ({**OK, "max_tokens": 252}, 400, "max_tokens", "context_length_exceeded"),
    "max-tokens-huge": ({**OK, "max_tokens": 10**40}, 400, "max_tokens", "context_length_exceeded"),
    "prompt-over-context": ({**OK, "prompt": "x" * 256}, 400, "prompt", "context_length_exceeded"),
    "temperature-over-2": ({**OK, "temperature": 2.5}, 400, "temperature", None),
    "temperature-negative": ({**OK, "temperature": -0.1}, 400, "temperature", None),
    "temperature-huge": ({**OK, "temperature": 1e308}, 400, "temperature", None),
    "top-p-zero": ({**OK, "top_p": 0}, 400, "top_p", None),
    "top-p-over-1": ({**OK, "top_p": 1.01}, 400, "top_p", None),
    "five-stops": ({**OK, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", None),
    "stop-not-text": ({**OK, "stop": [1]}, 400, "stop[0]", None),
    "stop-number": ({**OK, "stop": 5}, 400, "stop", None),
    "empty-prompt": ({**OK, "prompt": ""}, 400, "prompt", None),
    "two-prompts": ({**OK, "prompt": ["a", "b"]}, 400, "prompt", None),
    "no-prompts": ({**OK, "prompt": []}, 400, "prompt", None),
    "token-prompt": ({**OK, "prompt": [1, 2, 3]}, 400, "prompt[0]", None),
    "no-prompt": ({"model": "tiny"}, 400, "prompt", None),
    "no-model": ({"prompt": "Hello"}, 400, "model", None),
    "unknown-model": ({**OK, "model": "gpt-4"}, 404, "model", "model_not_found"),
    "model-not-text": ({**OK, "model": ["tiny"]}, 400, "model", None),
    "unencodable-character": ({**OK, "prompt": "caf\u00e9"}, 400, "prompt", "unencodable_character"),
    "lone-surrogate": ({**OK, "prompt": "a\ud800"}, 400, "prompt", None),
    "n-two": ({**OK, "n": 2}, 400, "n", None),
    "n-zero": ({**OK, "n": 0}, 400, "n", None),
    "presence-penalty": ({**OK, "presence_penalty": 0.5}, 400, "presence_penalty", None),
    "frequency-penalty-out-of-range": ({**OK, "frequency_penalty": 3}, 400, "frequency_penalty", None),
    "logprobs": ({**OK, "logprobs": 2}, 400, "logprobs", None),
    "best-of": ({**OK, "best_of": 3}, 400, "best_of", None),
    "suffix": ({**OK, "suffix": "end"}, 400, "suffix", None),
    "logit-bias": ({**OK, "logit_bias": {"5": 1}}, 400, "logit_bias", None),
    "seed-negative": ({**OK, "seed": -1}, 400, "seed", None),
    "seed-huge": ({**OK, "seed": 2**64}, 400, "seed", None),
    "stream-not-bool": ({**OK, "stream": "yes"}, 400, "stream", None),
    "stream-options-without-stream": ({**OK, "stream_options": {"include_usage": True}}, 400, "stream_options", None),
    "stream-options-unknown": ({**OK, "stream": True, "stream_options": {"x": 1}}, 400, "stream_options.x", None),
    "unknown-field": ({**OK, "temprature": 0}, 400, "temprature", None),
    "nested-junk": ({**OK, "prompt": {"a": [{"b": None}]}}, 400, "prompt", None),
}


@pytest.mark.parametrize("name", BAD_COMPLETIONS)
def test_a_bad_completion_request_is_a_4xx_naming_the_field(client: TestClient, name: str) -> None:
    body, status, param, code = BAD_COMPLETIONS[name]
    assert_error(post(client, "/v1/completions", body), status, param, code)
    if param not in ("stream", "stream_options"):  # the same for a stream
        assert_error(post(client, "/v1/completions", {**body, "stream": True}), status, param, code)


BAD_CHATS = {
    "empty-messages": ({**CHAT, "messages": []}, 400, "messages", None),
    "no-messages": ({"model": "tiny"}, 400, "messages", None),
    "tool-role": ({**CHAT, "messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role", None),
    "no-content": ({**CHAT, "messages": [{"role": "user"}]}, 400, "messages[0].content", None),
    "image-part": (
        {**CHAT, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        400,
        "messages[0].content[0].type",
        None,
    ),
    "unencodable": (
        {**CHAT, "messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": "\u2603"}]},
        400,
        "messages[1].content",
        "unencodable_character",
    ),
    "two-token-limits": ({**CHAT, "max_completion_tokens": 5}, 400, "max_completion_tokens", None),
    "over-context": ({**CHAT, "max_completion_tokens": 250, "max_tokens": None}, 400, "max_tokens", None),
    "messages-over-context": (
        {**CHAT, "messages": [{"role": "user", "content": "x" * 300}]},
        400,
        "messages",
        "context_length_exceeded",
    ),
    "logprobs": ({**CHAT, "logprobs": True}, 400, "logprobs", None),
    "tools": ({**CHAT, "tools": [{"type": "function"}]}, 400, "tools", None),
    "json-format": ({**CHAT, "response_format": {"type": "json_object"}}, 400, "response_format.type", None),
    "unknown-model": ({**CHAT, "model": "nope"}, 404, "model", "model_not_found"),
    "top-p-text": ({**CHAT, "top_p": "0.5"}, 400, "top_p", None),
}


@pytest.mark.parametrize("name", BAD_CHATS)
def test_a_bad_chat_request_is_a_4xx_naming_the_field(client: TestClient, name: str) -> None:
    body, status, param, code = BAD_CHATS[name]
    assert_error(post(client, "/v1/chat/completions", body), status, param, code)


GARBAGE = {
    "empty-body": b"",
    "json-array": b"[1, 2]",
    "json-string": b'"hello"',
    "json-null": b"null",
    "truncated-json": b'{"model": "tiny", "prompt": "He',
    "not-utf-8": b'{"model": "tiny", "prompt": "\xff\xfe"}',
    "binary": bytes(range(256)),
    "nan": b'{"model": "tiny", "prompt": "a", "temperature": NaN}',
    "infinity": b'{"model": "tiny", "prompt": "a", "max_tokens": Infinity}',
    "deep-nesting": b'{"model": "tiny", "prompt": ' + b"[" * 4000 + b"]" * 4000 + b"}",
    "huge-number": b'{"model": "tiny", "prompt": "a", "temperature": 1e999}',
}


@pytest.mark.parametrize("name", GARBAGE)
@pytest.mark.parametrize("route", ["/v1/completions", "/v1/chat/completions"])
def test_garbage_bodies_are_400_in_the_error_shape(client: TestClient, route: str, name: str) -> None:
    response = client.post(route, content=GARBAGE[name], headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_body_over_the_limit_is_413(client: TestClient) -> None:
    assert_error(client.post("/v1/completions", json={**OK, "prompt": "x" * 20_000}), 413, None, "request_too_large")


def test_a_body_that_is_not_json_typed_is_400(client: TestClient) -> None:
    assert_error(
        client.post("/v1/completions", content=json.dumps(OK), headers={"content-type": "text/plain"}), 400, None
    )


def test_unknown_routes_and_methods_in_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, None)
    assert_error(client.post("/v2/completions", json=OK), 404, None)
    error = assert_error(client.get("/v1/completions"), 405, None)
    assert "GET" in error["message"]


def test_a_full_queue_is_429_rate_limit_exceeded(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(job: object) -> None:
        raise QueueFull("16 requests are already waiting")

    monkeypatch.setattr(client.app.state.worker, "submit", full)  # type: ignore[attr-defined]
    response = client.post("/v1/completions", json=OK)
    error = assert_error(response, 429, None, "rate_limit_exceeded")
    assert "retry later" in error["message"] and response.headers["retry-after"] == "1"


# --- API key -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(model_dir: Path) -> Iterator[TestClient]:
    with client_for(model_dir, api_key=KEY) as c:
        yield c


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}]
)
def test_without_the_key_v1_routes_are_401(keyed: TestClient, headers: dict[str, str]) -> None:
    assert_error(keyed.get("/v1/models", headers=headers), 401, None, "invalid_api_key")
    assert_error(keyed.post("/v1/completions", json=OK, headers=headers), 401, None, "invalid_api_key")
    assert_error(keyed.post("/v1/completions", content=b"{", headers=headers), 401, None, "invalid_api_key")


def test_with_the_key_v1_routes_answer_and_health_is_open(keyed: TestClient) -> None:
    assert keyed.get("/health").status_code == 200
    good = {"Authorization": f"Bearer {KEY}"}
    assert keyed.get("/v1/models", headers=good).status_code == 200
    assert keyed.post("/v1/completions", json=OK, headers=good).status_code == 200


def test_a_bug_in_generation_is_500_in_the_error_shape_or_an_error_event(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Iterator[Any]:
        raise RuntimeError("a bug")
        yield

    monkeypatch.setattr("llm.serve.worker.stream_pieces", broken)
    error = assert_error(client.post("/v1/completions", json=OK), 500, None)
    assert error["type"] == "server_error" and "RuntimeError" in error["message"]
    chunks = events(client.post("/v1/completions", json={**OK, "stream": True}).text)
    assert chunks[-2]["error"]["type"] == "server_error" and chunks[-1] == "[DONE]"
    assert client.get("/health").json()["running"] == 0
