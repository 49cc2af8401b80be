"""Claim ``--output``: record what is there when the run checks it, and tell any change to it since."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OutputError, PathConflict
from ..registry.files import REPORT_NAME
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


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))  # symbolic links and ".." resolved, also for paths that do not exist


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_apart(
    written: Sequence[tuple[str, Path | None]],
    read: Sequence[tuple[str, Path | None]],
    *,
    replaced: Path | None = None,
) -> None:
    """Refuse, before any work, an output that would replace (or lie inside) what the run reads.

    ``written`` are the paths a run replaces, each by its option (``--output``, a folder replaced as a
    whole; ``--report``, a file). Each must not be, nor hold, a path of ``read`` (the checkpoint, the
    base model's folder, ``--adapter-config``, ``verify``'s ``--model``), nor be an existing path inside
    one (it would replace a part of it). ``replaced``, the folder replaced as a whole, must not be nor
    hold the current folder, and the other written paths must not lie inside it (they would be
    replaced with it). Paths are compared with symbolic links resolved.

    Args:
        written: (option, path) of each output; ``None`` paths are skipped.
        read: (what, path) of each input, ``what`` as messages name it (``the checkpoint``); ``None``
            paths are skipped.
        replaced: the path of ``written`` that is a folder replaced as a whole (``--output``), if any.

    Raises:
        PathConflict: naming both paths and the fix (exit 2).
    """
    inputs = [(what, Path(path), _real(Path(path))) for what, path in read if path is not None]
    cwd = Path.cwd()
    for option, path in written:
        if path is None:
            continue
        target = _real(path)
        held = _joined([*inputs, ("the current folder",)], "or")
        fix = (
            f"pass another {option}: a new folder that holds none of {held}"
            if path == replaced
            else f"pass another {option}: a new file outside {_joined(inputs, 'and')}"
        )
        writer = "the converted folder" if path == replaced else "the report"
        for what, given, real in inputs:
            if target == real:
                raise PathConflict(f"{option} {path} is {what} {given}: {writer} would replace it", fix)
            if _within(real, target):
                raise PathConflict(f"{option} {path} holds {what} {given}: replacing it would delete {what}", fix)
            if _within(target, real) and os.path.lexists(path):
                raise PathConflict(
                    f"{option} {path} is inside {what} {given}: {writer} would replace a part of it", fix
                )
        if path == replaced:
            if _within(_real(cwd), target):
                where = "is the current folder" if _real(cwd) == target else f"holds the current folder {cwd}"
                raise PathConflict(f"{option} {path} {where}: replacing it would delete what is there", fix)
        elif replaced is not None and _within(target, _real(replaced)):
            raise PathConflict(
                f"{option} {path} is inside --output {replaced}, which the converted folder replaces",
                f"pass a {option} outside {replaced} (the folder holds its own {REPORT_NAME})",
            )


def _joined(inputs: Sequence[tuple[Any, ...]], word: str) -> str:
    names = [what for what, *_ in inputs] or ["the inputs"]
    return f"{', '.join(names[:-1])} {word} {names[-1]}" if len(names) > 1 else names[0]
