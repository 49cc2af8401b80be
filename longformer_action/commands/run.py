"""Run a command's work: bugs become one error line, and in GitHub Actions the run gets log groups,
annotations, outputs and the step summary."""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from ..errors import CheckFailed, ConversionError, UnexpectedError

# Interpreter teardown garbage-collects every object torch and transformers built (about 1 s on 2
# cores) though nothing alive at exit needs it: files are closed by `with` blocks. Registered at
# import, so it runs after every handler registered later.
atexit.register(gc.freeze)


@contextlib.contextmanager
def bugs_as_errors(command: str, *, debug: bool, progress: Any = None) -> Iterator[None]:
    """Turn an exception no check foresaw into one ``UnexpectedError`` line naming the stage it escaped from.

    ``--debug`` prints its traceback first. Click's own exceptions (usage errors, exit) pass through.
    """
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except Exception as exc:
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        raise UnexpectedError(getattr(progress, "failed", None) or command, exc) from exc


def run_command(
    work: Callable[[Any], dict[str, Any]],
    *,
    outputs: Callable[[dict[str, Any]], dict[str, str]],
    summary: Callable[[dict[str, Any]], str] | None = None,
    owned: list[Path | None],
    command: str,
    debug: bool = False,
    secrets: list[str | None] | None = None,
) -> dict[str, Any]:
    """Run a command's work; in GitHub Actions add groups, annotations, outputs and the summary.

    Args:
        work: the command's work, given the progress; returns its report (plain data).
        outputs: the step outputs of a report.
        summary: the step summary of a report (default: the conversion's, ``publishing.summary.summary_markdown``).
        owned: paths the command wrote, handed back to the workspace's owner in a container.
        command: the command's name, for an unexpected error's line.
        debug: print a bug's traceback too.
        secrets: masked in GitHub Actions before anything is printed, beside ``HF_TOKEN`` (the push's token, which
            may come from the file ``hf auth login`` wrote).
    """
    from ..action.toolkit import Actions
    from ..progress import ActionsProgress, Progress

    actions = Actions.detect()
    if actions:
        for secret in dict.fromkeys([os.environ.get("HF_TOKEN"), *(secrets or [])]):  # each once, in order
            actions.add_mask(secret)
        debug = debug or os.environ.get("RUNNER_DEBUG") == "1"  # a re-run with debug logging
    progress = ActionsProgress(actions.stream) if actions else Progress()
    try:
        with bugs_as_errors(command, debug=debug, progress=progress):
            report = work(progress)
    except ConversionError as exc:
        if actions:
            from ..publishing.summary import summary_markdown

            title = "Check failed" if isinstance(exc, CheckFailed) else f"longformer-convert: {exc.stage} failed"
            actions.error(exc.format_message(), title=title)
            report = getattr(exc, "report", None)
            heading = "Push to the Hugging Face Hub failed" if exc.stage == "push" else "Longformer conversion failed"
            actions.append_summary(
                summary_markdown(report) if report else f"## {heading}\n\n> **Error:** {exc.format_message()}\n"
            )
        raise
    finally:
        if actions:
            actions.hand_back(*owned)
    if actions:
        from ..publishing.summary import summary_markdown

        actions.set_outputs(outputs(report))
        actions.append_summary((summary or summary_markdown)(report))
    return report
