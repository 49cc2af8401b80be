"""Progress on stderr: one line per stage with sizes and time, and progress lines on long stages.

In GitHub Actions each stage is also a log group (``ActionsProgress``).
stdout is kept for data (``inspect --json``); everything here goes to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from . import cancel
from .action.toolkit import command


def human_bytes(n: float) -> str:
    """Format a byte count: ``1.2 GB``, ``340 kB`` (decimal units, as the Hub shows sizes)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


@dataclass
class StageRecord:
    """A running stage; set ``detail`` to say what it did."""

    name: str
    detail: str = ""
    seconds: float = 0.0


class Progress:
    """Writes progress lines to a stream (stderr by default) and keeps stage timings."""

    def __init__(self, stream: TextIO | None = None, *, min_interval: float = 2.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.timings: dict[str, float] = {}
        self.min_interval = min_interval
        #: The first stage that ended with an exception (for the error that names it), else ``None``.
        self.failed: str | None = None

    def line(self, text: str) -> None:
        """Write one line."""
        print(text, file=self.stream, flush=True)

    def warning(self, text: str) -> None:
        """Write a warning line."""
        self.line(f"Warning: {text}")

    def begin_group(self, title: str) -> None:
        """Start a stage (a log group in GitHub Actions)."""

    def end_group(self) -> None:
        """End a stage."""

    @contextmanager
    def stage(self, name: str, title: str) -> Iterator[StageRecord]:
        """Time a stage; log ``name: detail (N.N s)`` when it ends, even when it fails."""
        record = StageRecord(name)
        self.begin_group(title)
        start = time.perf_counter()
        status = "failed"
        try:
            with cancel.stage(name):
                yield record
            status = record.detail
        except cancel.Cancelled:
            status = "cancelled"
            raise
        finally:
            record.seconds = time.perf_counter() - start
            self.timings[name] = round(self.timings.get(name, 0.0) + record.seconds, 3)
            if status == "failed" and self.failed is None:
                self.failed = name
            self.line(f"{name}: {status} ({record.seconds:.1f} s)")
            self.end_group()

    def bytes_meter(self, label: str, total: int) -> Callable[[int], None]:
        """Return ``advance(n)``, which logs ``label: 40% (x of y)`` at most every ``min_interval`` s."""
        state = {"done": 0, "last": time.perf_counter()}

        def advance(n: int) -> None:
            state["done"] += n
            now = time.perf_counter()
            if now - state["last"] >= self.min_interval and state["done"] < total:
                state["last"] = now
                pct = 100 * state["done"] / max(total, 1)
                self.line(f"{label}: {pct:.0f}% ({human_bytes(state['done'])} of {human_bytes(total)})")

        return advance


class ActionsProgress(Progress):
    """Progress that also opens a log group per stage."""

    def begin_group(self, title: str) -> None:
        self.line(command("group", title))

    def end_group(self) -> None:
        self.line(command("endgroup"))

    def warning(self, text: str) -> None:
        self.line(command("warning", text))
