"""Cancelling a run: SIGTERM, SIGINT and SIGHUP end it the same way, with nothing left behind.

A cancelled job's container gets SIGTERM (``docker stop``) or, through ``docker run``, the signal
the runner sent; a terminal gives SIGINT (Ctrl-C) or SIGHUP (the terminal closed). Each one raises
``Cancelled`` in the main thread at the next Python instruction, so every ``with`` and ``finally``
on the way out runs: the staging folder is removed and the output lock released (see
``writing/staging.py``). The command then prints one line saying which signal arrived during which stage,
and exits with the shell's status for a death by that signal (``128 + signum``: 143, 130, 129).

``Cancelled`` derives from ``BaseException``, as ``KeyboardInterrupt`` does, so that no
``except Exception`` on the way (a library's, or a command's catch-all) can swallow it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TypeVar

T = TypeVar("T")


#: The signals that cancel a run.
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


#: Test-only: ``STAGE`` or ``STAGE:FOLDER`` makes a run wait when it reaches ``STAGE`` (see ``pause_point``).
PAUSE_ENV = "LONGFORMER_CONVERT_TEST_PAUSE"


#: The longest a test pause waits before the run goes on by itself (seconds).
PAUSE_LIMIT = 600.0


class Cancelled(BaseException):
    """A signal ended the run; ``exit_code`` is ``128 + signum``, as a shell reports a death by that signal."""

    def __init__(self, signum: int, stage: str, outcome: str | None = None) -> None:
        self.signum = signum
        #: Where the run was: "during the save stage", "after the check stage" ...
        self.stage = stage
        #: What became of the output, as the run knew it when the signal arrived (see ``set_outcome``).
        self.outcome = outcome
        super().__init__(f"cancelled by {signal.Signals(signum).name} {stage}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def message(self) -> str:
        """The one line the command prints."""
        name = signal.Signals(self.signum).name
        why = " (Ctrl-C)" if self.signum == signal.SIGINT else ""
        outcome = f"; {self.outcome}" if self.outcome else ""
        return f"cancelled by {name}{why} {self.stage}{outcome}."


@dataclass
class _State:
    stage: str | None = None
    finished: str | None = None
    received: int | None = None
    raised: bool = False
    deferring: int = 0
    outcome: str | None = None


_state = _State()


def _where() -> str:
    if _state.stage:
        return f"during the {_state.stage} stage"
    if _state.finished:
        return f"after the {_state.finished} stage"
    return "before the first stage"


def _handle(signum: int, frame: FrameType | None) -> None:
    if _state.received is None:
        _state.received = signum
    # Raised once: a second signal while the first one's cleanup runs must not cut that cleanup short.
    if _state.raised or _state.deferring:
        return
    _state.raised = True
    raise Cancelled(signum, _where(), _state.outcome)


def set_outcome(text: str) -> None:
    """Say what a cancel now would leave (``staging.py`` keeps it true: it cleans up before the line is printed)."""
    _state.outcome = text


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Mark a stage for the cancel line ("during the save stage"); a test pause at it waits here first."""
    _state.stage = name
    try:
        pause_point(name)
        yield
    finally:
        if _state.stage == name:
            _state.stage, _state.finished = None, name


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a signal back until the block ends, then raise ``Cancelled``.

    For steps that must not stop half-way: publishing swaps folders and checks what it swapped out,
    and a swap without its check could lose a folder.
    """
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    if not _state.deferring and _state.received is not None and not _state.raised:
        _state.raised = True
        raise Cancelled(_state.received, _where(), _state.outcome)


def run_cancellable(work: Callable[[], T]) -> T:
    """Run a command's ``work`` under ``cancellable()``; a cancel prints one line and exits ``128 + signum``.

    In GitHub Actions the line is also an error annotation and the step summary says so.
    """
    try:
        with cancellable():
            return work()
    except Cancelled as exc:
        from .action.toolkit import Actions

        line = exc.message()
        actions = Actions.detect()
        if actions:
            actions.error(line, title="longformer-convert: cancelled")
            actions.append_summary(f"## Longformer conversion cancelled\n\n> {line}\n")
        print(f"Error: {line}", file=sys.stderr, flush=True)
        raise SystemExit(exc.exit_code) from None


@contextmanager
def cancellable() -> Iterator[None]:
    """Turn SIGTERM, SIGINT and SIGHUP into ``Cancelled`` inside the block (main thread only).

    The previous handlers come back when the block ends; a signal received before the block starts
    or after it ends has its usual effect.
    """
    global _state
    _state = _State()
    if threading.current_thread() is not threading.main_thread():  # Python runs handlers in the main thread only
        yield
        return
    previous = {sig: signal.signal(sig, _handle) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def pause_point(name: str) -> None:
    """Test-only: wait at stage ``name`` when ``LONGFORMER_CONVERT_TEST_PAUSE`` names it; otherwise nothing.

    Tests set ``LONGFORMER_CONVERT_TEST_PAUSE=STAGE:FOLDER`` to hold a real run at a known point (for
    example with its staging folder written, before the check) and then signal it, start another run,
    or change ``--output``. The run creates ``FOLDER/paused-<pid>`` and waits until ``FOLDER/resume``
    exists; with no ``FOLDER`` it waits until a signal cancels it. It never waits longer than
    ``PAUSE_LIMIT`` seconds, and changes nothing else, so a stray setting costs time, never a result.
    """
    wanted, _, folder = os.environ.get(PAUSE_ENV, "").partition(":")
    if wanted != name:
        return
    resume = None
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"paused-{os.getpid()}").write_text(name)
        resume = Path(folder) / "resume"
    deadline = time.monotonic() + PAUSE_LIMIT
    while time.monotonic() < deadline and not (resume is not None and resume.exists()):
        time.sleep(0.05)
