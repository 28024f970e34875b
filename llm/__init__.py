"""llm: a config-driven research framework for building small language models from scratch."""

__version__ = "0.1.0"
