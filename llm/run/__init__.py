"""What every training verb shares around the fit: the run directory, resuming, and up-front config checks."""

from llm.run.checks import check_run_config
from llm.run.resume import resume_config
from llm.run.rundir import RunDir

__all__ = ["RunDir", "check_run_config", "resume_config"]
