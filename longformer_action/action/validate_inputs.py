"""The action's first step: check the inputs and write the plan as step outputs (standard library only)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from .inputs import InputError, action_input, input_warnings, plan_inputs
from .toolkit import Actions

#: The annotation's title and the step summary of an invalid input.
INVALID_TITLE = "Invalid input '{name}'"
INVALID_SUMMARY = (
    "## Longformer conversion: invalid input `{name}`\n\n> **Error:** input `{name}` {problem}.\n>\n> **Fix:** {fix}.\n"
)


def main(environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> int:
    """The action's first step: mask the tokens, validate, warn of inputs that do nothing, write the plan to
    ``GITHUB_OUTPUT``; 0 or 1."""
    environ = os.environ if environ is None else environ
    actions = Actions(environ, stream if stream is not None else sys.stdout)
    actions.add_mask(action_input(environ, "hf-token"))
    actions.add_mask(action_input(environ, "hub-token"))
    try:
        plan = plan_inputs(environ)
    except InputError as exc:
        actions.error(str(exc), title=INVALID_TITLE.format(name=exc.name))
        actions.append_summary(INVALID_SUMMARY.format(name=exc.name, problem=exc.problem, fix=exc.fix))
        return 1
    for title, message in input_warnings(environ):
        actions.warning(message, title=title)
    actions.set_outputs(plan)
    return 0


if __name__ == "__main__":  # pragma: no cover - run by action.yml
    sys.exit(main())
