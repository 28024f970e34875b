"""`llm serve model=<dir> [host port api_key name device max_tokens slots queue_size request_timeout_s
max_body_bytes]`: an OpenAI-compatible HTTP API over a model directory (llm/serve)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from llm.cli.errors import report_user_errors
from llm.cli.overrides import check_flat_overrides
from llm.configs import config_dir
from llm.errors import ConfigError

CONFIG_DIR, CONFIG_NAME = config_dir() / "verbs", "serve"
CONFIG = CONFIG_DIR / f"{CONFIG_NAME}.yaml"


@hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
@report_user_errors
def app(cfg: DictConfig) -> None:
    from llm.serve.settings import bind, check_serve_settings

    check_extra_installed()
    settings = check_serve_settings(cfg)  # every setting, before the model is loaded
    sock = bind(settings.host, settings.port)
    try:
        from llm.serve.run import serve

        serve(settings, sock)
    finally:
        sock.close()


def check_extra_installed() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"llm serve needs fastapi and uvicorn ({e}); install them with pip install 'llm[serve]'"
        ) from None


def main() -> None:
    report_user_errors(check_overrides)(sys.argv[1:])
    app()


def check_overrides(args: list[str]) -> None:
    check_flat_overrides(args, CONFIG, "llm serve", "api_key= and name= take any text as it is")
