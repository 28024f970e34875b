"""The settings of `llm serve`, checked before the model is loaded: each mistake is a ConfigError naming the
setting, the value given and the way out."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from llm.errors import ConfigError
from llm.infer.settings import check_device, check_model, is_int, show

API_KEY_ENV = "LLM_API_KEY"
EMPTY = "''"  # an empty value, as it is typed


@dataclass(frozen=True)
class Limits:
    """The server's settings that bound what requests may ask and how many wait."""

    api_key: str | None = None
    max_body_bytes: int = 1_000_000
    queue_size: int = 16  # requests waiting for a slot; one more is refused with 429
    slots: int = 4  # requests generating at once, one token of each in turn
    request_timeout_s: float = 600.0  # queue wait and generation together


@dataclass(frozen=True)
class ServeSettings:
    model: Path
    host: str
    port: int
    name: str
    device: str
    max_tokens: int
    limits: Limits


def check_serve_settings(cfg: DictConfig, environ: dict[str, str] | None = None) -> ServeSettings:
    """The checked settings of a composed serve config; the API key may come from $LLM_API_KEY."""
    model = check_model(cfg, "llm serve", "llm serve model=runs/shakespeare/model")
    environ = dict(os.environ) if environ is None else environ
    limits = Limits(
        api_key=check_api_key(cfg.api_key, environ.get(API_KEY_ENV)),
        max_body_bytes=check_count("max_body_bytes", cfg.max_body_bytes, "the largest request body", 1_000_000),
        queue_size=check_count("queue_size", cfg.queue_size, "requests waiting for a slot", 16),
        slots=check_count("slots", cfg.slots, "requests generating at once", 4),
        request_timeout_s=check_seconds(cfg.request_timeout_s),
    )
    return ServeSettings(
        model=model,
        host=check_host(cfg.host),
        port=check_port(cfg.port),
        name=check_name(cfg.name, model),
        device=check_device(cfg.device, "llm serve"),
        max_tokens=check_count("max_tokens", cfg.max_tokens, "tokens a request gets when it names none", 16),
        limits=limits,
    )


def check_host(value: Any) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigError(
            f"host={show(value) or EMPTY} is not a host name or address; use host=127.0.0.1 (this machine only, the "
            "default) or host=0.0.0.0 (every network interface)"
        )
    return value


def check_port(value: Any) -> int:
    if not is_int(value) or not 0 <= value <= 65535:
        raise ConfigError(
            f"port={show(value)} must be an integer from 1 to 65535 (or 0: any free port), e.g. port=8000"
        )
    return int(value)


def check_api_key(value: Any, from_env: str | None) -> str | None:
    """The key from api_key=, else from $LLM_API_KEY; None: no key asked for."""
    if value is None:
        return from_env or None
    if not isinstance(value, str) or not value or any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(
            f"api_key={show(value) or EMPTY} must be a non-empty text without spaces (clients send it as "
            f"Authorization: Bearer <key>); leave it out, or set ${API_KEY_ENV}, for none"
        )
    return value


def check_name(value: Any, model: Path) -> str:
    """The model's name in the API: name=, or the model directory's folder name."""
    name = model.resolve().name if value is None else value
    if not isinstance(name, str) or not name or not name.isprintable():
        raise ConfigError(f"name={show(value)} must be a non-empty text, the model's name in the API, e.g. name=tiny")
    return name


def check_count(key: str, value: Any, meaning: str, example: int) -> int:
    if not is_int(value) or value < 1:
        raise ConfigError(f"{key}={show(value)} must be an integer >= 1 ({meaning}), e.g. {key}={example}")
    return int(value)


def check_seconds(value: Any) -> float:
    if not (is_int(value) or isinstance(value, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"request_timeout_s={show(value)} must be a number of seconds > 0 (the longest a request may wait and "
            "generate), e.g. request_timeout_s=600"
        )
    return float(value)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a ConfigError saying why not (in use, no such address, no permission)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ConfigError(f"host={host} is not an address of this machine ({e}); use host=127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); choose another port=, or port=0 for any free one"
        ) from None
    return sock
