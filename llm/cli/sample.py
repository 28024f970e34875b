"""`llm sample model=<dir> prompt=... [prompt_file max_new_tokens temperature top_k top_p repetition_penalty stop seed
num_samples device]`. Generation runs on the model's key/value cache (llm.infer)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from llm.cli.errors import report_user_errors
from llm.cli.overrides import check_flat_overrides
from llm.configs import config_dir

CONFIG_DIR, CONFIG_NAME = config_dir() / "verbs", "sample"
CONFIG = CONFIG_DIR / f"{CONFIG_NAME}.yaml"


@hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
@report_user_errors
def app(cfg: DictConfig) -> None:
    from llm.export import load_model_dir
    from llm.infer import sample_text
    from llm.infer.settings import check_prompt, check_sample_settings

    s = check_sample_settings(cfg)  # every setting, before the model is loaded
    model, tokenizer = load_model_dir(s.model, device=s.device)
    check_prompt(s.prompt, tokenizer, model.config.block_size)
    for i in range(s.num_samples):
        if i:
            print("\n---\n")
        text = sample_text(
            model,
            tokenizer,
            s.prompt,
            s.max_new_tokens,
            s.temperature,
            s.top_k,
            s.sample_seed(i),
            top_p=s.top_p,
            repetition_penalty=s.repetition_penalty,
            stop=s.stop,
        )
        print(text)


def main() -> None:
    report_user_errors(check_overrides)(sys.argv[1:])
    app()


def check_overrides(args: list[str]) -> None:
    """Refuses, as one line, an override that Hydra would refuse in several (a setting llm sample lacks, a
    value it cannot parse, `+prompt=`) or accept to no effect (`+unknown=1`), or that deletes a setting."""
    check_flat_overrides(args, CONFIG, "llm sample", "prompt= and prompt_file= take any text as it is")
