"""`llm serve` as a real uvicorn process on a free loopback port, driven over HTTP (httpx) and by the official
`openai` client: answers equal llm.infer's greedy text, two streams at once both right, a client that leaves
mid-stream frees its slot, the API key, and no 5xx for anything sent."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import expected, expected_chat, make_model_dir

openai = pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-local-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
START_S = 120  # the longest the server may take to start on a busy machine


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:<port>
    model_dir: Path

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=60)

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()


def ready_url(process: subprocess.Popen[str]) -> str:
    """The URL in the line `llm serve` prints when ready (its stdout read on a thread, so a hang cannot block)."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            continue
        if line.startswith("serving "):
            return line.split(" at ")[1].split("/v1")[0]
    raise AssertionError("llm serve printed no ready line")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model_dir = make_model_dir(tmp_path_factory.mktemp("server") / "tiny", 2048)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("LLM_API_KEY", None)
    command = [sys.executable, "-m", "llm", "serve", f"model={model_dir}", "port=0", f"api_key={KEY}", "slots=2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield Server(ready_url(process), model_dir)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr


def test_the_ready_line_and_health(server: Server) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    health = server.health()
    assert health["status"] == "ok" and health["model"] == "tiny"


def test_openai_client_completions_whole_and_streamed(server: Server) -> None:
    client = server.client()
    want = expected(server.model_dir, "Hello", 12)
    answer = client.completions.create(model="tiny", prompt="Hello", max_tokens=12, temperature=0)
    assert answer.choices[0].text == want and answer.choices[0].finish_reason == "length"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (5, 12, 17)
    chunks = list(client.completions.create(model="tiny", prompt="Hello", max_tokens=12, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == want
    assert chunks[-1].choices[0].finish_reason == "length"


def test_openai_client_chat_whole_and_streamed(server: Server) -> None:
    client = server.client()
    messages = [{"role": "user", "content": "Hi there"}]
    want = expected_chat(server.model_dir, messages, 20)
    answer = client.chat.completions.create(model="tiny", messages=messages, max_tokens=20, temperature=0)
    assert answer.choices[0].message.content == want and answer.choices[0].message.role == "assistant"
    assert answer.usage.prompt_tokens == len("User: Hi there\nAssistant: ")
    stream = client.chat.completions.create(
        model="tiny",
        messages=messages,
        max_tokens=20,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens


def test_openai_client_errors(server: Server) -> None:
    with pytest.raises(openai.AuthenticationError) as e:
        server.client("wrong").models.list()
    assert e.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as e:
        server.client().completions.create(model="gpt-4", prompt="Hi", max_tokens=2)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        server.client().completions.create(model="tiny", prompt="Hi", max_tokens=5000)
    assert e.value.param == "max_tokens" and "2048" in e.value.message
    assert [m.id for m in server.client().models.list()] == ["tiny"]


def stream_text(server: Server, prompt: str, max_tokens: int, out: dict[str, str]) -> None:
    chunks = server.client().completions.create(
        model="tiny", prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True
    )
    out[prompt] = "".join(c.choices[0].text for c in chunks)


def test_two_concurrent_streams_both_complete_with_the_right_text(server: Server) -> None:
    out: dict[str, str] = {}
    threads = [threading.Thread(target=stream_text, args=(server, p, 200, out)) for p in ("Hello", "World")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert out == {p: expected(server.model_dir, p, 200) for p in ("Hello", "World")}


def test_a_client_that_leaves_mid_stream_frees_its_slot(server: Server) -> None:
    before = server.health()["cancelled"]
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 2000, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, headers=AUTH, timeout=60) as response:
        lines = response.iter_lines()
        got = [line for line, _ in zip(lines, range(6), strict=False) if line.startswith("data: ")]
        assert len(got) == 3
    deadline = time.monotonic() + 60
    while server.health()["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    health = server.health()
    assert (health["running"], health["queued"]) == (0, 0)
    assert health["cancelled"] == before + 1
    answer = server.client().completions.create(model="tiny", prompt="Hi", max_tokens=3, temperature=0)
    assert answer.choices[0].text == expected(server.model_dir, "Hi", 3)


@pytest.mark.parametrize(
    "body",
    [b"", b"\xff\xfe\xfd", b"{", b"[]", b'{"model": "tiny", "prompt": "x", "max_tokens": -1}', b"x" * 2_000_000],
)
def test_garbage_over_http_is_4xx_in_the_error_shape(server: Server, body: bytes) -> None:
    response = httpx.post(f"{server.url}/v1/completions", content=body, headers=AUTH, timeout=60)
    assert 400 <= response.status_code < 500, response.text
    assert set(json.loads(response.text)["error"]) == {"message", "type", "param", "code"}


def test_without_the_key_v1_is_401_and_health_is_open(server: Server) -> None:
    assert httpx.get(f"{server.url}/v1/models", timeout=10).status_code == 401
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
