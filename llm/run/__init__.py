"""The one training path of every training verb: the run directory, resuming, up-front config checks,
recipes (the verb-specific parts) and the runner that fits and finishes a run."""

from llm.run.checks import check_run_config
from llm.run.resume import resume_config
from llm.run.rundir import RunDir

__all__ = ["RunDir", "check_run_config", "resume_config"]
