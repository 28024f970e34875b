"""`llm train [overrides]`: the Hydra app over llm.train.train."""

import hydra
from omegaconf import DictConfig

from llm.cli.errors import report_user_errors
from llm.configs import config_dir

CONFIG_DIR, CONFIG_NAME = config_dir(), "train"


@hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> float:
    from llm.run.recipes import pretrain
    from llm.run.runner import command_line_overrides, is_sweep_run, optimized_value, run

    summary = run(cfg, pretrain, command_line_overrides(), sweep=is_sweep_run())
    return optimized_value(summary, cfg.get("optimized_metric", "val_loss"))


if __name__ == "__main__":  # how Lightning starts a distributed run's other processes (llm.cli.relaunchable_as)
    main()
