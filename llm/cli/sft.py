"""`llm sft model=DIR data.path=... [overrides]`: the Hydra app over llm.run.runner.run with the sft recipe."""

import hydra
from omegaconf import DictConfig

from llm.cli.errors import report_user_errors
from llm.configs import config_dir

CONFIG_DIR, CONFIG_NAME = config_dir(), "sft"


@hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    from llm.run.recipes import sft
    from llm.run.runner import command_line_overrides, is_sweep_run, run

    run(cfg, sft, command_line_overrides(), sweep=is_sweep_run())


if __name__ == "__main__":  # how Lightning starts a distributed run's other processes (llm.cli.relaunchable_as)
    main()
