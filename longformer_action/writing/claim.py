"""Claim ``--output``: record what is there when the run checks it, and tell any change to it since."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputError
from ..text import listing


def _entries(folder: Path) -> dict[str, tuple[int, int, int]]:
    with os.scandir(folder) as it:
        return {e.name: (st.st_ino, st.st_size, st.st_mtime_ns) for e in it for st in [e.stat(follow_symlinks=False)]}


@dataclass(frozen=True)
class Claim:
    """What was at ``output`` when the run checked it: nothing, or a folder (its identity and its entries)."""

    output: Path
    identity: tuple[int, int] | None = None
    entries: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)

    def described(self) -> str:
        if self.identity is None:
            return "nothing was there"
        if not self.entries:
            return "it was an empty folder"
        return f"it was a folder of {len(self.entries)} {'entry' if len(self.entries) == 1 else 'entries'}"

    def differences(self, path: Path) -> str | None:
        """How ``path`` (what was at ``output`` at publish time) differs from the claim; ``None`` when it does not."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return "it was removed"
        if (st.st_dev, st.st_ino) != self.identity:
            return f"it was replaced by {describe(path)}"
        now = _entries(path)
        added = sorted(set(now) - set(self.entries))
        removed = sorted(set(self.entries) - set(now))
        changed = sorted(n for n in now if n in self.entries and now[n] != self.entries[n])
        parts = [
            f"{label} {_names(names)}"
            for label, names in (("new:", added), ("removed:", removed), ("changed:", changed))
            if names
        ]
        return "; ".join(parts) or None


def _names(names: list[str]) -> str:
    return listing(names, 3)


def describe(path: Path) -> str:
    """What is at ``path`` now, for messages (``a folder holding a, b and 3 more``, ``a file``)."""
    if path.is_symlink():
        return "a symbolic link"
    if path.is_dir():
        entries = sorted(os.listdir(path))
        return f"a folder holding {_names(entries)}" if entries else "an empty folder"
    return "a file"


def check_output(output: Path, *, overwrite: bool) -> Claim:
    """Refuse an output that exists as a file, or as a non-empty folder without ``overwrite``; record what is there.

    Returns:
        The claim: what publishing may replace.

    Raises:
        OutputError: with the fix.
    """
    if output.is_symlink() and not output.exists():
        raise OutputError(
            f"output {output} is a symbolic link to {os.readlink(output)}, which does not exist",
            "remove the link, or choose another --output",
        )
    if output.is_file() or (output.exists() and not output.is_dir()):
        raise OutputError(f"output {output} exists and is a file", "pass a folder path as --output")
    if not output.exists():
        return Claim(output)
    try:
        entries = _entries(output)
    except OSError as exc:
        raise OutputError(
            f"cannot read output folder {output} ({exc.strerror or exc})", "choose another --output"
        ) from None
    if entries and not overwrite:
        raise OutputError(
            f"output folder {output} exists and is not empty",
            "pass --overwrite to replace it, or choose another --output",
        )
    st = os.lstat(output)
    return Claim(output, (st.st_dev, st.st_ino), entries)
