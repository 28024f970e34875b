"""`llm-lm-eval`: lm-evaluation-harness's own command line with our model registered as "llm".

    llm-lm-eval --model llm --model_args path=runs/x/model --tasks my_task --include_path tasks/ --device cpu
    python -m llm.eval.lm_eval_cli ...                                          (the same without the script)

lm_eval 0.4.13 has no plugin entry point for models: it finds a model only in its registry, and only an
imported module can register one. So the bare `lm_eval --model llm ...` fails (no module registered "llm"), and
the shell form is `llm-lm-eval --model llm --model_args path=DIR ...`: this command imports llm.eval.harness
(which registers the model) and then hands every argument to lm_eval's CLI unchanged. From `llm` itself:
`llm eval model=DIR lm_eval.tasks=[...] lm_eval.include_path=...` (the lm_eval section of eval.json).
"""

from __future__ import annotations

import sys

from llm.errors import UserError


def main() -> None:
    """Registers the "llm" model and runs lm_eval's command line with sys.argv; a UserError (a bad model
    directory, say) is one line `error: ...` and exit status 2, as in `llm`."""
    from lm_eval.__main__ import cli_evaluate

    import llm.eval.harness  # noqa: F401  (registers the model)

    try:
        cli_evaluate()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
