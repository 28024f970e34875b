"""The error for settings that cannot work together; components with their own error types subclass ValueError too."""


class ConfigError(ValueError):
    """A setting that cannot work; the message names the setting and the way out."""
