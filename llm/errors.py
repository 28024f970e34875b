"""User errors: one base class for every mistake a user can make (a setting, a file, a request).

The CLI turns any `UserError` into one line (`error: <message>`) and exit status 2; anything else is a bug
and keeps its traceback. Each message names what is wrong and the way out.
"""


class UserError(Exception):
    """A mistake in what the user asked for or gave; the message names the value and the fix."""


class ConfigError(UserError, ValueError):
    """A setting that cannot work; the message names the setting and the way out."""


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, unsafe to load or from another run."""


class RunDirError(UserError):
    """A run directory that holds another run, is in use by another process, or cannot be written."""
