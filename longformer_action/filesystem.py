"""What the file system says, as one line with its real cause and the fix that works.

Writes: a full disk (``ENOSPC``), a quota (``EDQUOT``), a file larger than the file system or the
process allows (``EFBIG``), a failing device (``EIO``), a read-only mount (``EROFS``), a permission.
Each names the file being written and what it needs; ``writing()`` wraps every write of the folder
(weights, config, tokenizer files, model card, report, ``SHA256SUMS``) and of ``--report``.

Reads: a path that cannot be read says why (a dangling symbolic link, a folder that cannot be
entered, a permission, a name that is not UTF-8, a Git LFS pointer in place of the file), so that no
message suggests copying a file again when copying cannot help.
"""

from __future__ import annotations

import errno
import os
import shutil
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ConversionError, OutputError
from .progress import human_bytes

#: What a Git LFS pointer file starts with (the checkout fetched the pointer, not the file).
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def shown(path: os.PathLike[str] | str) -> str:
    """A path for messages: bytes that are not UTF-8 shown as ``\\xNN``, so that the message prints anywhere."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__


def _owner(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return ""
    return f"owner uid {st.st_uid}, mode {st.st_mode & 0o7777:04o}"


def _free(folder: Path) -> str:
    try:
        return human_bytes(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown"


def write_error(
    path: Path,
    exc: OSError,
    *,
    needs: int | None = None,
    option: str = "--output",
    split: str | None = None,
    source: Path | None = None,
    several: bool = False,
) -> OutputError:
    """The one-line error for a write that failed.

    Args:
        path: the file being written.
        exc: what the operating system said.
        needs: the file's size in bytes, when known.
        option: the option that chose where it goes (``--output``, ``--report``): the fix names it.
        split: the option that makes the file smaller (``--max-shard-size`` for the weights), for ``EFBIG``.
        source: the file ``path`` is copied from, when it is a copy: a failure to read it is named as such.
        several: ``path`` is one of several files written together in its folder (a tokenizer's): the
            file the operating system names, when it does, is the one the message names.

    Returns:
        An ``OutputError`` naming the file, the cause (by ``errno``), and the fix.
    """
    named = isinstance(exc.filename, (str, bytes)) and exc.filename2 is None
    failed = Path(os.fsdecode(exc.filename)) if named else None
    if several and failed is not None and failed.parent == path.parent:
        path = failed  # one of several files written together (the tokenizer's): the one the system named
    where, code, name = shown(path), exc.errno, _errno_name(exc)
    size = f"; it needs {human_bytes(needs)}" if needs else ""
    if source is not None and failed == Path(source):  # the copy's source failed: the read is the problem
        return OutputError(
            f"cannot read {shown(source)} while writing {where} ({exc.strerror or exc}, {name})",
            f"make {shown(source)} readable for this user"
            if code in (errno.EACCES, errno.EPERM)
            else "check that file and the file system it is on",
        )
    if code == errno.ENOSPC:
        return OutputError(
            f"no space left on the device while writing {where}{size} ({_free(path.parent)} free there, {name})",
            f"free space on that disk, or pass another {option} on a disk with room",
        )
    if code == getattr(errno, "EDQUOT", None):
        return OutputError(
            f"disk quota exceeded while writing {where}{size} ({name})",
            f"free space within your quota (or have it raised), or pass another {option} outside it",
        )
    if code == errno.EFBIG:
        fix = f"pass a smaller {split} (e.g. {split} 1GB), or another {option}" if split else f"pass another {option}"
        return OutputError(
            f"{where} is larger than the file system (or the process's file size limit, ulimit -f) allows{size} "
            f"({name})",
            f"{fix} on a file system that holds files this large",
        )
    if code == errno.EIO:
        return OutputError(
            f"input/output error while writing {where} ({name}): the disk or the network file system under it failed",
            f"check that device or mount (its kernel log), then run again; or pass another {option}",
        )
    if code == errno.EROFS:
        return OutputError(
            f"cannot write {where}: {shown(path.parent)} is on a read-only file system ({name})",
            f"pass another {option} on a writable file system",
        )
    if code in (errno.EACCES, errno.EPERM):
        folder = path.parent
        owner = _owner(folder)
        return OutputError(
            f"permission denied writing {where} ({name}; the folder {shown(folder)}: {owner or 'not readable'}, "
            f"this process runs as uid {os.geteuid()})",
            f"make {shown(folder)} writable for uid {os.geteuid()}, or pass another {option}",
        )
    return OutputError(
        f"cannot write {where} ({exc.strerror or exc}, {name})",
        f"pass another {option}",
    )


@contextmanager
def writing(
    path: Path,
    *,
    needs: int | None = None,
    option: str = "--output",
    split: str | None = None,
    source: Path | None = None,
    several: bool = False,
) -> Iterator[None]:
    """Turn an ``OSError`` raised while ``path`` is written into one ``OutputError`` (see ``write_error``).

    Raises:
        OutputError: the write failed.
    """
    try:
        yield
    except OSError as exc:
        raise write_error(path, exc, needs=needs, option=option, split=split, source=source, several=several) from None


def check_utf8_name(path: Path, option: str) -> None:
    """Refuse a path to write whose name is not UTF-8: safetensors and torch open files by UTF-8 names only.

    Raises:
        OutputError: naming the path (its bytes shown as ``\\xNN``) and the fix.
    """
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        raise OutputError(
            f"{option} {shown(path)} is not valid UTF-8 (the bytes shown as \\xNN): safetensors and torch open files "
            "by UTF-8 names only, so the folder could not be read back",
            f"pass a UTF-8 name to {option}",
        ) from None


def _near_names(path: Path) -> list[str]:
    # a name typed in one Unicode normalization (NFC) while the file has another (NFD, as macOS writes it)
    try:
        siblings = os.listdir(path.parent if str(path.parent) else ".")
    except OSError:
        return []
    wanted = unicodedata.normalize("NFC", path.name)
    return [n for n in siblings if n != path.name and unicodedata.normalize("NFC", n) == wanted]


def read_problem(path: Path, what: str, option: str) -> tuple[str, str] | None:
    """Why ``path`` cannot be read, as ``(message, fix)``; ``None`` when it can be opened (or is a folder).

    Args:
        path: what the user passed.
        what: how messages name it (``checkpoint``).
        option: the option it came from (``--checkpoint``), for the fix.
    """
    where = shown(path)
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return (
            f"{what} path {where} is not valid UTF-8 (the bytes shown as \\xNN): torch and safetensors open files "
            "by UTF-8 names only",
            f"rename it to a UTF-8 name and pass that to {option}",
        )
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return (
                f"{what} {where} is a symbolic link to {shown(os.readlink(path))}, which does not exist",
                f"point the link at the {what}, or pass the {what}'s own path to {option}",
            )
        near = _near_names(path)
        if near:
            return (
                f"{what} {where} does not exist, but {ascii(near[0])} beside it differs from that name "
                f"({ascii(path.name)}) only in its Unicode normalization (composed against decomposed accents)",
                f"pass the name as it is on disk to {option}, or rename the file",
            )
        return f"{what} {where} does not exist", f"check the {option} path"
    except NotADirectoryError:
        return f"{what} {where} does not exist: a part of its path is a file, not a folder", f"check the {option} path"
    except PermissionError:
        return (
            f"cannot reach {what} {where}: a folder on its path cannot be entered by uid {os.geteuid()} (permission "
            "denied)",
            f"give uid {os.geteuid()} search (x) permission on the folders above it, or copy the {what} somewhere "
            "readable",
        )
    except OSError as exc:
        return f"cannot read {what} {where} ({exc.strerror or exc}, {_errno_name(exc)})", f"check the {option} path"
    if os.path.isdir(path):
        return None
    try:
        with path.open("rb") as f:
            head = f.read(len(LFS_POINTER))
    except PermissionError:
        return (
            f"cannot read {what} {where}: permission denied ({_owner(path)}; this process runs as uid {os.geteuid()})",
            f"make it readable (chmod a+r {where}), or run as its owner",
        )
    except OSError as exc:
        return read_error(path, exc, what)
    if head == LFS_POINTER and st.st_size < 1024:
        return (
            f"{what} {where} is a Git LFS pointer ({st.st_size} bytes), not the {what}: the repository stores it "
            "with Git LFS and the checkout did not fetch it",
            "fetch it (git lfs pull; in a workflow, actions/checkout with `lfs: true`)",
        )
    return None


def read_error(path: Path, exc: OSError, what: str) -> tuple[str, str]:
    """``(message, fix)`` for an ``OSError`` while a file was read (not its damage: its device, its permission)."""
    where = shown(path)
    if isinstance(exc, PermissionError):
        return f"cannot read {what} {where}: permission denied", f"make it readable (chmod a+r {where})"
    if exc.errno == errno.EIO:
        return (
            f"input/output error while reading {what} {where} (EIO): the disk or the network file system under it "
            "failed",
            "check that device or mount (its kernel log), then run again",
        )
    return (
        f"cannot read {what} {where} ({exc.strerror or exc}, {_errno_name(exc)})",
        "check the file and the file system it is on, then run again",
    )


def raise_read_problem(path: Path, what: str, option: str, error: type[ConversionError]) -> None:
    """Raise ``error`` with ``read_problem``'s message and fix, when there is a problem."""
    problem = read_problem(path, what, option)
    if problem is not None:
        raise error(*problem)
