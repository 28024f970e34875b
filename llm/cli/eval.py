"""`llm eval model=<dir> [text=validation|file|none text.path=... window stride batch_size max_tokens samples.*
lm_eval.* preference.* out device]`: loss, perplexity, bits per byte, samples, lm-evaluation-harness tasks and a
preference evaluation of a model directory (llm.eval)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from llm.cli.errors import report_user_errors
from llm.configs import config_dir
from llm.errors import ConfigError

CONFIG_DIR, CONFIG_NAME = config_dir() / "verbs", "eval"
CONFIG = CONFIG_DIR / f"{CONFIG_NAME}.yaml"
GROUPS = ("text",)


@hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
@report_user_errors
def app(cfg: DictConfig) -> None:
    from llm.eval.run import evaluate

    evaluate(cfg)


def main() -> None:
    report_user_errors(check_overrides)(sys.argv[1:])
    app()


def check_overrides(args: list[str]) -> None:
    """Refuses, as one line, an override that adds a setting (`+foo=1` would be taken to no effect) or deletes
    one; other unknown keys are refused when the config is composed (llm.cli.compose_check)."""
    try:
        from hydra._internal.utils import get_args_parser
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.errors import OverrideParseException
    except ImportError:  # another Hydra: leave its checks to it
        return
    config = OmegaConf.load(CONFIG)
    if not isinstance(config, DictConfig):  # not a mapping: leave its checks to Hydra
        return
    settings = [str(key) for key in config if key not in ("defaults", "hydra")] + list(GROUPS)
    blocks = [*GROUPS, *(str(key) for key in settings if OmegaConf.is_dict(config.get(key)))]
    parser = OverridesParser.create()
    for text in get_args_parser().parse_args(args).overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except OverrideParseException:
            continue  # said in one line by llm.cli.compose_check
        key = str(override.key_or_group)
        if key == "hydra" or override.is_hydra_override():
            continue
        if override.is_delete():
            raise ConfigError(f"~{key} would delete a setting of llm eval; give {key}=... or leave it out")
        unknown = key.split(".")[0] not in settings
        if override.is_add() or (override.is_force_add() and unknown):
            what = "llm eval has no setting" if unknown else "+ adds a setting llm eval would not read:"
            raise ConfigError(
                f"{what} {key!r}; write key=value without the +, with one of its settings: {', '.join(settings)} "
                f"(and those inside {', '.join(blocks[:-1])} and {blocks[-1]})"
            )
