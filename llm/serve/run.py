"""Serving a model directory with uvicorn on a socket already bound (llm.serve.settings.bind), until Ctrl-C."""

from __future__ import annotations

import ipaddress
import socket
import sys

import uvicorn

from llm.data.chat import ChatTemplate, load_chat_template
from llm.export import load_model_dir
from llm.serve.app import build_app
from llm.serve.plan import ServedModel
from llm.serve.settings import API_KEY_ENV, ServeSettings
from llm.tokenizer import Tokenizer, TokenizerError


class ReadyServer(uvicorn.Server):
    """uvicorn's server, printing one line with the URL once it accepts connections."""

    def __init__(self, config: uvicorn.Config, ready_line: str) -> None:
        super().__init__(config)
        self.ready_line = ready_line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self.ready_line, flush=True)


def serve(settings: ServeSettings, sock: socket.socket) -> None:
    model, tokenizer = load_model_dir(settings.model, device=settings.device)
    template = load_chat_template(settings.model)
    problem = chat_problem(template, tokenizer)
    if problem:
        print(f"warning: {problem}; chat requests will be refused, completions are served", file=sys.stderr)
    if settings.limits.api_key is None and not is_loopback(settings.host):
        print(
            f"warning: host={settings.host} without api_key: anyone who can reach this machine can use the model "
            f"(set api_key=... or ${API_KEY_ENV})",
            file=sys.stderr,
        )
    served = ServedModel(settings.name, model, tokenizer, template, settings.max_tokens)
    app = build_app(served, settings.limits)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    url = f"http://{url_host(settings.host)}:{sock.getsockname()[1]}"
    ReadyServer(config, f"serving {served.name!r} at {url}/v1 (OpenAI-compatible; Ctrl-C stops)").run([sock])


def chat_problem(template: ChatTemplate, tokenizer: Tokenizer) -> str | None:
    """Why this tokenizer cannot encode the chat template's prefixes, or None."""
    for prefix in (template.system, template.user, template.assistant, template.end_of_turn):
        try:
            tokenizer.encode(prefix)
        except (TokenizerError, UnicodeError) as e:
            return f"the tokenizer cannot encode the chat template's {prefix!r} ({e})"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
