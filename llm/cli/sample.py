"""`llm sample model=<dir> prompt=... [prompt_file max_new_tokens temperature top_k seed num_samples device]`."""

import hydra
from omegaconf import DictConfig

from llm.cli.errors import report_user_errors
from llm.configs import config_dir


@hydra.main(config_path=str(config_dir() / "verbs"), config_name="sample", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    from llm.export import load_model_dir
    from llm.infer import sample_text
    from llm.infer.settings import check_prompt, check_sample_settings

    s = check_sample_settings(cfg)  # every setting, before the model is loaded
    model, tokenizer = load_model_dir(s.model, device=s.device)
    check_prompt(s.prompt, tokenizer, model.config.block_size)
    for i in range(s.num_samples):
        if i:
            print("\n---\n")
        print(sample_text(model, tokenizer, s.prompt, s.max_new_tokens, s.temperature, s.top_k, s.sample_seed(i)))
