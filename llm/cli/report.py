"""`llm report SWEEP_DIR [baseline=LABEL] [metric=val_loss]`."""

import hydra
from omegaconf import DictConfig

from llm.cli.errors import report_user_errors
from llm.configs import config_dir

CONFIG_DIR, CONFIG_NAME = config_dir(), "report"


@hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    from llm.report.sweep import print_report, report

    baseline = None if cfg.baseline is None else str(cfg.baseline)
    print_report(report(cfg.sweep_dir, baseline=baseline, metric=str(cfg.metric)))
