"""`python -m llm VERB overrides...` is the same as the `llm` console script."""

from llm.cli import main

if __name__ == "__main__":
    main()
