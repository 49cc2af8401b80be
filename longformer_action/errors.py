"""The errors users see: one family, one line each, every one with its cause and its fix.

Anything else escaping from a command is a bug: the command turns it into one ``UnexpectedError``
line that names the stage, the exception and where to report it (``--debug`` adds the traceback).
"""

from __future__ import annotations

import click

from .text import first_line

#: Exit status of a conversion that ran but whose forward-pass check failed.
EXIT_CHECK_FAILED = 3


class ConversionError(click.ClickException):
    """A failure the user can fix: what failed (``message``), how to fix it (``hint``), and where (``stage``).

    The parts stay apart, as click's exceptions keep theirs, and are composed only where the error is
    shown (``format_message``: ``Message. Hint.``). An error that is given another fix is built from
    ``message`` and the new hint, never by cutting the composed text.
    """

    exit_code = 1
    stage = "convert"

    def __init__(self, message: str, hint: str | None = None, *, stage: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        if stage is not None:
            self.stage = stage

    def format_message(self) -> str:
        """The one line users read: the message, then the fix, each a sentence."""
        text = self.message.rstrip(".")
        if not self.hint:
            return f"{text}."
        hint = self.hint.rstrip(".")
        return f"{text}. {hint[:1].upper()}{hint[1:]}."

    def __str__(self) -> str:
        return self.format_message()


class CheckpointError(ConversionError):
    """The checkpoint cannot be read: missing, not a checkpoint, truncated, or unsafe."""

    stage = "checkpoint"


class MappingError(ConversionError):
    """The checkpoint's keys or shapes do not fit a transformers class of the registry's tasks."""

    stage = "mapping"


class BaseModelError(ConversionError):
    """The base model's config or tokenizer cannot be resolved."""

    stage = "base-model"


class OutputError(ConversionError):
    """The output folder cannot be written, or exists already."""

    stage = "output"


class PathConflict(OutputError):
    """An output would replace, or be written inside, what the run reads (the checkpoint, the base model's
    folder, the current folder): refused before any work, as a usage error."""

    exit_code = 2


class CheckFailed(ConversionError):
    """The converted folder does not compute what the checkpoint computed."""

    exit_code = EXIT_CHECK_FAILED
    stage = "check"
    #: The report of the failed check, for the step summary.
    report: dict | None = None


class PushError(ConversionError):
    """The folder may not go to the Hub (not checked, changed since), or the Hub refused it."""

    stage = "push"


#: The package whose metadata names the issue tracker (``[project.urls] Issues`` in pyproject.toml).
PACKAGE = "longformer-convert-action"


def issues_url() -> str:
    """Where bugs are reported: the ``Issues`` project URL of the installed package's metadata."""
    from importlib import metadata

    try:
        entries = metadata.metadata(PACKAGE).get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        entries = []
    for entry in entries:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "issues" and url.strip():
            return url.strip()
    return "the project's issue tracker"


class UnexpectedError(ConversionError):
    """An exception no check foresaw escaped a stage: a bug, told in one line with where to report it.

    Attributes:
        stage: the stage it escaped from (``read``, ``map``, ``check`` ...; the command's name
            outside any stage).
        exit_code: ``EXIT_CHECK_FAILED`` when it escaped while the check ran, else 1.
    """

    def __init__(self, stage: str, exc: BaseException) -> None:
        self.stage = stage
        self.exit_code = EXIT_CHECK_FAILED if stage == "check" else 1
        text = first_line(exc, 200, fallback="")
        super().__init__(
            f"unexpected {type(exc).__name__} in the {stage} stage" + (f": {text}" if text else ""),
            f"this is a bug in longformer-convert: report it at {issues_url()} with the command and this log "
            "(--debug, or LONGFORMER_CONVERT_DEBUG=1, prints the traceback too)",
        )
