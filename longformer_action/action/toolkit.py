"""GitHub Actions' workflow commands, named as the Actions toolkit names them: ``set_output``,
``add_mask`` (``setSecret``), ``append_summary`` (``core.summary``), ``error``, ``group``.

Standard library only: the action's runner-side steps run on the runner's own Python."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

#: GitHub drops a step summary larger than this (it does not truncate it).
SUMMARY_LIMIT = 1024 * 1024


def escape_data(text: str) -> str:
    """Escape a workflow command's message (``%``, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command's property value (the message escapes plus ``:`` and ``,``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **properties: str) -> str:
    """Format one workflow command line, e.g. ``::error title=T::message``."""
    props = ",".join(f"{k}={escape_property(v)}" for k, v in properties.items() if v)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def heredoc_entry(name: str, value: str) -> str:
    """One ``GITHUB_OUTPUT`` entry in the heredoc form, with a delimiter absent from the value."""
    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    while delimiter in value:  # pragma: no cover - 128 random bits
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


class Actions:
    """The GitHub Actions runtime as seen from a step (its environment variables)."""

    def __init__(self, environ: Mapping[str, str], stream: TextIO | None = None) -> None:
        self.environ = environ
        self.stream = stream if stream is not None else sys.stderr

    @classmethod
    def detect(cls, environ: Mapping[str, str] | None = None) -> Actions | None:
        """The runtime when ``GITHUB_ACTIONS=true``, else ``None``."""
        environ = os.environ if environ is None else environ
        return cls(environ) if environ.get("GITHUB_ACTIONS") == "true" else None

    def emit(self, line: str) -> None:
        """Write one workflow command line."""
        print(line, file=self.stream, flush=True)

    def add_mask(self, secret: str | None) -> None:
        """Mask a secret in the log from now on (the toolkit's ``setSecret``)."""
        if secret:
            self.emit(f"::add-mask::{escape_data(secret)}")

    def error(self, message: str, title: str) -> None:
        """One error annotation."""
        self.emit(command("error", message, title=title))

    def warning(self, message: str, title: str) -> None:
        """One warning annotation."""
        self.emit(command("warning", message, title=title))

    def set_output(self, name: str, value: str) -> None:
        """Set one step output (see ``set_outputs``)."""
        self.set_outputs({name: value})

    def set_outputs(self, outputs: Mapping[str, str]) -> None:
        """Append outputs to ``GITHUB_OUTPUT`` (heredoc form, safe for any value)."""
        path = self.environ.get("GITHUB_OUTPUT")
        if not path:
            return
        with open(path, "a", encoding="utf-8") as f:
            for name, value in outputs.items():
                f.write(heredoc_entry(name, value))

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        """A log group around what runs inside (``::group::`` ... ``::endgroup::``)."""
        self.emit(command("group", title))
        try:
            yield
        finally:
            self.emit(command("endgroup"))

    def append_summary(self, markdown: str) -> None:
        """Append Markdown to the step summary, shortened when over GitHub's 1 MiB limit."""
        path = self.environ.get("GITHUB_STEP_SUMMARY")
        if not path:
            return
        data = markdown.encode("utf-8")
        existing = Path(path).stat().st_size if Path(path).exists() else 0
        room = SUMMARY_LIMIT - existing - 200
        if len(data) > room:
            data = data[: max(room, 0)].decode("utf-8", "ignore").encode() + b"\n\n*(summary shortened)*\n"
        with open(path, "ab") as f:
            f.write(data + b"\n")

    def hand_back(self, *paths: Path | None) -> None:
        """Give files written as root back to the workspace owner, so that later steps can remove them."""
        workspace = self.environ.get("GITHUB_WORKSPACE")
        if os.geteuid() != 0 or not workspace or not Path(workspace).is_dir():
            return
        st = Path(workspace).stat()
        if st.st_uid == 0:
            return
        for path in paths:
            if path is None or not path.exists():
                continue
            for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
                with contextlib.suppress(OSError):
                    os.chown(p, st.st_uid, st.st_gid, follow_symlinks=False)
