"""The one SHA-256 helper set: a file's digest (now or in the background), a folder's, a name's, a stream's.

Digests name files in the report, the model card and ``SHA256SUMS``, and tell a folder's files from
the ones its report lists. Files are read in chunks (``hashlib.file_digest``), never whole."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, hex."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data``, hex."""
    return hashlib.sha256(data).hexdigest()


def streaming_sha256() -> Any:
    """A SHA-256 to ``update()`` with what is written, while it is written (``hexdigest()`` at the end)."""
    return hashlib.sha256()


def in_background(compute: Callable[[], str]) -> Callable[[], str]:
    """Start ``compute`` in a daemon thread now; the returned function waits for its result."""
    result: dict[str, str] = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", compute()), name="sha256", daemon=True)
    thread.start()

    def get() -> str:
        thread.join()
        return result["value"]

    return get


def folder_sha256(root: Path, files: list[Path]) -> Callable[[], str]:
    """SHA-256 of the folder: of ``sha256sum``'s lines for its files, sorted by name (computed in the background).

    The same as ``(cd ROOT && LC_ALL=C ls -A | xargs sha256sum | sha256sum)`` for a flat folder.
    """
    return in_background(
        lambda: hashlib.sha256(
            "".join(f"{file_sha256(file)}  {file.relative_to(root).as_posix()}\n" for file in files).encode()
        ).hexdigest()
    )
