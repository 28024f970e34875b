"""`llm export model=<dir> format=hf|onnx out=<dir> [overwrite=true]`: a model directory in another format."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from llm.cli.errors import report_user_errors
from llm.cli.overrides import check_flat_overrides
from llm.configs import config_dir

CONFIG_DIR, CONFIG_NAME = config_dir() / "verbs", "export"
CONFIG = CONFIG_DIR / f"{CONFIG_NAME}.yaml"


@hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
@report_user_errors
def app(cfg: DictConfig) -> None:
    from llm.export.formats import export_model
    from llm.export.settings import check_export_settings

    s = check_export_settings(cfg)
    quiet_transformers()
    out = export_model(s.model, s.format, s.out, overwrite=s.overwrite)
    print(f"wrote {out} ({s.format})")


def quiet_transformers() -> None:
    """No progress bars from transformers' loading and saving of weights (where it is installed)."""
    try:
        from transformers.utils import logging
    except ImportError:  # the export names the missing extra itself
        return
    logging.disable_progress_bar()


def main() -> None:
    report_user_errors(check_flat_overrides)(
        sys.argv[1:], CONFIG, "llm export", "model= and out= take any path as it is"
    )
    app()
