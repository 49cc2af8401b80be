"""The errors users see: one family, one line each, every one with its cause and its fix.

Anything that is not a ``ConversionError`` escaping from a command is a bug and shows a traceback.
"""

from __future__ import annotations

import click

#: Exit status of a conversion that ran but whose forward-pass check failed.
EXIT_CHECK_FAILED = 3


class ConversionError(click.ClickException):
    """A failure the user can fix: ``message`` says what failed, ``hint`` how to fix it."""

    exit_code = 1
    stage = "convert"

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.hint = hint
        text = message.rstrip(".")
        if hint:
            hint = hint.rstrip(".")
            text = f"{text}. {hint[:1].upper()}{hint[1:]}."
        else:
            text = f"{text}."
        super().__init__(text)


class CheckpointError(ConversionError):
    """The checkpoint cannot be read: missing, not a checkpoint, truncated, or unsafe."""

    stage = "checkpoint"


class MappingError(ConversionError):
    """The checkpoint's keys or shapes do not fit a Longformer question-answering model."""

    stage = "mapping"


class BaseModelError(ConversionError):
    """The base model's config or tokenizer cannot be resolved."""

    stage = "base-model"


class OutputError(ConversionError):
    """The output folder cannot be written, or exists already."""

    stage = "output"


class CheckFailed(ConversionError):
    """The converted folder does not compute what the checkpoint computed."""

    exit_code = EXIT_CHECK_FAILED
    stage = "check"
    #: The report of the failed check, for the step summary.
    report: dict | None = None
