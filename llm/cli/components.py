"""`llm components [model=<preset>] [model.n_layer=...] [vocab_size=...]`."""

import hydra
from omegaconf import DictConfig

from llm.cli.errors import report_user_errors
from llm.configs import config_dir

CONFIG_DIR, CONFIG_NAME = config_dir(), "components"


@hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    from llm.components import print_components
    from llm.run.recipes import model_config

    print_components(model_config(cfg, cfg.vocab_size))
