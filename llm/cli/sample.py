"""`llm sample model=<dir> prompt=... [max_new_tokens temperature top_k seed num_samples]`."""

import hydra
from omegaconf import DictConfig

from llm.cli.errors import report_user_errors
from llm.configs import config_dir

CONFIG_DIR, CONFIG_NAME = config_dir() / "verbs", "sample"


@hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    from llm.export import load_model_dir
    from llm.infer import sample_text

    model, tokenizer = load_model_dir(cfg.model, device=cfg.device)
    for i in range(cfg.num_samples):
        if i:
            print("\n---\n")
        text = sample_text(model, tokenizer, cfg.prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.seed + i)
        print(text)
