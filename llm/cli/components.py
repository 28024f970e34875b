"""`llm components [model=<preset>] [model.n_layer=...] [vocab_size=...]`."""

import hydra
from omegaconf import DictConfig, OmegaConf

from llm.cli.errors import report_user_errors
from llm.configs import config_dir


@hydra.main(config_path=str(config_dir()), config_name="components", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    from llm.components import print_components
    from llm.model import ModelConfig

    node = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(node, dict)
    print_components(ModelConfig.from_dict({**node, "vocab_size": cfg.vocab_size}))
