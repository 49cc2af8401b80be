"""Write ``SHA256SUMS``, the folder's last file: one line per file, as ``sha256sum --check`` reads it."""

from __future__ import annotations

from pathlib import Path

from ..digests import file_sha256
from ..errors import OutputError
from ..filesystem import writing
from ..registry.files import CHECKSUMS_NAME


def write_checksums(folder: Path) -> Path:
    """Write ``SHA256SUMS`` into ``folder``: one ``<sha256>  <path>`` line per other file, sorted by path.

    Call it last, once every other file is in place, so that it covers all of them (the model card and
    the report included); a downstream job runs ``sha256sum -c SHA256SUMS`` in the folder.

    Args:
        folder: the finished folder; files in subfolders are listed by their relative POSIX path.

    Returns:
        The path of the written file.

    Raises:
        OutputError: a file name that ``sha256sum`` would need to escape (a backslash or a line break), or
            the write failed (see ``filesystem.write_error``).
    """
    target = folder / CHECKSUMS_NAME
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p != target):
        name = path.relative_to(folder).as_posix()
        if any(c in name for c in "\\\n\r"):
            raise OutputError(f"file name {name!r} cannot be listed in {CHECKSUMS_NAME}", "rename the file")
        lines.append(f"{file_sha256(path)}  {name}\n")
    with writing(target):
        target.write_text("".join(lines), encoding="utf-8")
    return target
