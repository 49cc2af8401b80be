"""All or nothing output: claim ``--output``, write beside it, publish atomically, clean up after dead runs.

What a run keeps in the output's parent folder (fixed-size names, so that any legal ``--output`` name
works: a name may take 255 bytes, and a staging name built from it would not fit):

    .longformer-convert-<16 hex>.lock       the output's lock (16 hex of the SHA-256 of the output's name),
                                            held with ``flock`` for the whole run; it holds the owner record
    .longformer-convert-<16 hex>.partial/   a run's staging folder (16 random hex)
        owner.json                          the owner record, ``flock``-ed while its run is alive
        model/                              the folder being written; renamed to ``--output`` when checked

The rules, and how each is kept:

- *One run per output.* The lock is taken before anything is checked or written, with ``flock``:
  the kernel releases it when its process dies in any way, so a killed run never blocks the next one,
  and it works across containers that share the folder (PIDs and host names do not). A second run
  fails at once, before the slow work, naming the run that holds the lock (PID, host, start).
- *Nothing unchecked is replaced.* What is at ``--output`` is recorded when the run checks it (nothing;
  or a folder: its device and inode and its entries). Publishing uses Linux's
  ``renameat2(RENAME_NOREPLACE)`` when nothing was there (plain ``rename`` would silently replace an
  empty folder that appeared meanwhile), and ``renameat2(RENAME_EXCHANGE)`` when a checked folder is
  replaced: the swapped-out folder is compared with the record, and swapped back when it differs.
  Where ``renameat2`` is missing (another OS, a file system without it) the same checks run around
  plain renames; only the instant between the check and the rename is then unguarded.
- *Nothing left behind.* The staging folder is removed on success, on any error and on a cancel
  (``cancel.py``). A run killed outright (SIGKILL, out of memory) cannot remove it: the next run to
  the same output finds it, sees that its owner's lock is free (its process is gone), removes it and
  says so. Where ``flock`` is not supported, the owner's PID and process start time decide on the
  same host, and a folder whose owner cannot be judged is left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import cancel
from .errors import OutputError
from .progress import human_bytes

PREFIX = ".longformer-convert-"
LOCK_SUFFIX = ".lock"
STAGING_SUFFIX = ".partial"
OWNER_NAME = "owner.json"
#: The folder inside the staging folder that becomes ``--output``.
MODEL_DIR = "model"
_STAGING = re.compile(rf"^{re.escape(PREFIX)}[0-9a-f]{{16}}{re.escape(STAGING_SUFFIX)}$")

# renameat2(2) flags and the "current directory" file descriptor (Linux, <linux/fs.h> and <fcntl.h>).
_AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
# errno values meaning "this kernel, C library or file system cannot do it", for renameat2 and flock
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOLCK}


# --- who owns a lock or a staging folder ---------------------------------------------------------


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (``/proc/PID/stat`` field 22); ``None`` if it is gone.

    Two processes that had the same PID one after the other have different start times, so
    ``(pid, start)`` names one process for the life of a boot.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Owner:
    """The run that holds a lock or a staging folder (stored as JSON in both)."""

    output: str
    pid: int
    host: str
    started: str
    boot_id: str | None = None
    start_ticks: int | None = None
    tool: str = field(default="longformer-convert")

    @classmethod
    def current(cls, output: Path) -> Owner:
        """This process, converting to ``output``."""
        return cls(
            output=str(output),
            pid=os.getpid(),
            host=socket.gethostname(),
            started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            boot_id=_boot_id(),
            start_ticks=process_start_ticks(os.getpid()),
        )

    @classmethod
    def from_json(cls, text: str) -> Owner | None:
        try:
            data = json.loads(text)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            return None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True) + "\n"

    def describe(self) -> str:
        return f"PID {self.pid} on host {self.host}, started {self.started}"

    def process_alive(self) -> bool | None:
        """Whether the owner's process still runs, by PID and start time; ``None`` when this host cannot tell.

        Only a process of this host and boot can be looked up (another container has other PIDs
        and another host name, so its owner cannot be judged from here).
        """
        if self.host != socket.gethostname() or self.boot_id is None or self.boot_id != _boot_id():
            return None
        ticks = process_start_ticks(self.pid)
        if ticks is None:
            return False
        return self.start_ticks is not None and ticks == self.start_ticks


def _try_flock(fd: int) -> bool | None:
    """``True``: locked now; ``False``: another open file holds it; ``None``: the file system cannot lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return None
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _read_owner(fd: int, *, attempts: int = 50) -> Owner | None:
    # the holder writes its record right after it takes the lock: give it a moment
    for _ in range(attempts):
        owner = Owner.from_json(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
        if owner is not None:
            return owner
        time.sleep(0.02)
    return None


# --- the output's lock ---------------------------------------------------------------------------


def lock_path(output: Path) -> Path:
    """The lock file of ``output``: beside it, named by a digest of its name (fixed size)."""
    digest = hashlib.sha256(os.fsencode(output.name)).hexdigest()[:16]
    return output.parent / f"{PREFIX}{digest}{LOCK_SUFFIX}"


class OutputBusy(OutputError):
    """Another run holds the output's lock."""


class OutputLock:
    """The lock on one ``--output``: held from before the check until after the publish (or the cleanup)."""

    def __init__(self, path: Path, fd: int, *, locked: bool) -> None:
        self.path = path
        self._fd: int | None = fd
        #: False where the file system cannot lock (concurrent runs are then not detected).
        self.locked = locked

    @classmethod
    def acquire(cls, output: Path, owner: Owner) -> OutputLock:
        """Take the lock of ``output`` for ``owner``, or fail naming the run that holds it.

        Raises:
            OutputBusy: another live run holds it.
            OSError: the lock file cannot be created (the caller words it).
        """
        path = lock_path(output)
        for _ in range(100):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                got = _try_flock(fd)
                if got is False:
                    other = _read_owner(fd)
                    who = other.describe() if other else f"its lock file {path.name} does not say which"
                    raise OutputBusy(
                        f"another conversion is writing {output} ({who})",
                        "wait for it to finish, or choose another --output",
                    )
                # the holder before us may have removed the file after we opened it: lock the file at the path
                if got and not _same_file(fd, path):
                    os.close(fd)
                    continue
                record = owner.to_json().encode()
                os.pwrite(fd, record, 0)
                os.ftruncate(fd, len(record))
            except BaseException:
                os.close(fd)
                raise
            return cls(path, fd, locked=bool(got))
        raise OutputError(f"cannot take the lock {path}: it is replaced as fast as it is taken", "try again")

    def release(self) -> None:
        """Remove the lock file and let go (removed while held, so that no other run ever holds a removed file)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(self._fd, self.path):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


# --- what was at --output when the run checked it ------------------------------------------------


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
            return f"it was replaced by {_what(path)}"
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
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _what(path: Path) -> str:
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


# --- atomic renames --------------------------------------------------------------------------------


class _Unsupported(Exception):
    """renameat2 is missing here (not Linux, an old C library or kernel, or a file system without it)."""


def _renameat2(source: Path, target: Path, flags: int) -> None:
    # glibc has renameat2 since 2.28 (the image's Debian has 2.36); ctypes, since Python's os has no binding
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        raise _Unsupported from None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        raise _Unsupported
    raise OSError(code, os.strerror(code), str(source), None, str(target))


# --- the staging folder ----------------------------------------------------------------------------


class StagedOutput:
    """A staging folder beside ``output``: write into ``path``, then ``publish()``."""

    def __init__(self, claim: Claim, root: Path, owner_fd: int) -> None:
        self.output = claim.output
        self.claim = claim
        self.root = root
        #: The folder to write into; it becomes ``output``.
        self.path = root / MODEL_DIR
        self.published = False
        self._owner_fd: int | None = owner_fd
        self._keep = False  # set only when a folder that was at output is stuck inside the staging folder

    def ensure_space(
        self, parts: Mapping[str, int], *, statvfs: Callable[[str], os.statvfs_result] | None = None
    ) -> int:
        """Fail before anything is written when the file system has less room than ``parts`` add up to.

        Args:
            parts: bytes by what they are for (``{"weights": ..., "tokenizer files": ...}``).
            statvfs: ``os.statvfs`` by default.

        Returns:
            The free bytes (``f_bavail * f_frsize``: what an unprivileged writer may use).

        Raises:
            OutputError: naming what is needed, of what, and what is free.
        """
        needed = sum(parts.values())
        st = (statvfs or os.statvfs)(str(self.root))
        free = st.f_bavail * st.f_frsize
        if free < needed:
            detail = ", ".join(f"{human_bytes(n)} {what}" for what, n in parts.items() if n)
            raise OutputError(
                f"not enough free space for {self.output}: the folder needs {human_bytes(needed)} ({detail}), and "
                f"the file system of {self.output.parent} has {human_bytes(free)} free",
                "free space there, or choose an --output on a file system with more room (--dtype float16 or "
                "bfloat16 halves float32 weights)",
            )
        return free

    def publish(self) -> None:
        """Put the staged folder at ``output``; only what the run checked there may be replaced.

        Signals are held back until it is done, so that a swap is never left without its check.

        Raises:
            OutputError: ``output`` changed since the check (nothing is replaced; the staged folder
                stays in the staging folder, to be removed with it), or it cannot be renamed.
        """
        with cancel.deferred():
            try:
                if self.claim.identity is None:
                    self._publish_new()
                else:
                    self._publish_replacing()
            except OSError as exc:
                raise OutputError(
                    f"cannot put the converted folder at {self.output} ({exc.strerror or exc})",
                    "choose an --output in a writable folder on the same file system as its parent",
                ) from None
            self.published = True
            cancel.set_outcome(f"{self.output} was published before the signal arrived (complete and checked)")

    def _changed(self, what: str) -> OutputError:
        return OutputError(
            f"{self.output} changed during the run ({what}); {self.claim.described()} when the run checked it, so "
            "nothing was replaced and the converted folder was removed",
            f"look at what is at {self.output} now, then run again (with --overwrite to replace it)",
        )

    def _publish_new(self) -> None:
        try:
            _renameat2(self.path, self.output, RENAME_NOREPLACE)
        except _Unsupported:
            if os.path.lexists(self.output):
                raise self._changed(f"{_what(self.output)} appeared there") from None
            os.rename(self.path, self.output)  # unguarded for this instant: see the module's docstring
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise self._changed(f"{_what(self.output)} appeared there") from None
            raise

    def _publish_replacing(self) -> None:
        try:
            _renameat2(self.path, self.output, RENAME_EXCHANGE)
        except _Unsupported:
            self._publish_replacing_portably()
            return
        except FileNotFoundError:
            raise self._changed("it was removed") from None
        # self.path now holds what was at output, and output the new folder
        different = self.claim.differences(self.path)
        if different:
            try:
                _renameat2(self.path, self.output, RENAME_EXCHANGE)  # swap back: theirs to output, ours to staging
            except OSError:
                self._keep_aside(self.path, different)
            raise self._changed(different)

    def _keep_aside(self, theirs: Path, different: str) -> None:
        # What was at output could not be put back: keep it under a name outside the staging folder
        # (which is removed, and which a later run removes as stale), and say where.
        aside = self.output.parent / f"{PREFIX}{secrets.token_hex(8)}.replaced"
        if theirs.parent != self.output.parent:
            try:
                os.rename(theirs, aside)
            except OSError:
                aside = theirs
                self._keep = True
        else:
            aside = theirs
        raise OutputError(
            f"{self.output} changed during the run ({different}), and what was there could not be put back: it is "
            f"kept at {aside}",
            f"look at {self.output} and {aside}, keep what you need, then run again",
        )

    def _publish_replacing_portably(self) -> None:
        # Moved aside under a name outside the staging folder: should the way back fail, the folder
        # is kept there (and named in the error), never removed with the staging folder.
        aside = self.output.parent / f"{PREFIX}{secrets.token_hex(8)}.replaced"
        try:
            os.rename(self.output, aside)
        except FileNotFoundError:
            raise self._changed("it was removed") from None
        different = self.claim.differences(aside)
        if not different:
            try:
                os.rename(self.path, self.output)
            except OSError:
                different = f"{_what(self.output)} appeared there"
            else:
                shutil.rmtree(aside, ignore_errors=True)
                return
        try:
            os.rename(aside, self.output)
        except OSError:
            self._keep_aside(aside, different)
        raise self._changed(different)

    def discard(self) -> None:
        """Remove the staging folder (after a publish, what is left in it: the record, and a replaced folder)."""
        if not self._keep:
            shutil.rmtree(self.root, ignore_errors=True)
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None


def _create_staging(claim: Claim, owner: Owner) -> StagedOutput:
    parent = claim.output.parent
    for _ in range(100):
        root = parent / f"{PREFIX}{secrets.token_hex(8)}{STAGING_SUFFIX}"
        try:
            os.mkdir(root)
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - 64 random bits
        raise OutputError(f"cannot make a staging folder in {parent}", "try again")
    try:
        fd = os.open(root / OWNER_NAME, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        _try_flock(fd)  # held until the staging folder is removed: while held, its owner is alive
        os.write(fd, owner.to_json().encode())
        os.mkdir(root / MODEL_DIR)  # the mode of an ordinary folder (umask), unlike a 0700 temporary folder
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return StagedOutput(claim, root, fd)


def remove_stale(output: Path, log: Callable[[str], None]) -> list[Path]:
    """Remove the staging folders for ``output`` left by runs that are gone; leave a live owner's alone.

    Call it holding ``output``'s lock. An owner is gone when the lock on its record is free (the
    kernel drops it when the process dies); where the file system cannot lock, when its process on
    this host is gone or is another process with the same PID (another start time). Folders for
    other outputs, and folders whose owner cannot be judged, are left alone.

    Returns:
        The folders removed; each is also logged.
    """
    removed = []
    try:
        candidates = sorted(p for p in output.parent.iterdir() if _STAGING.match(p.name))
    except OSError:
        return removed
    for folder in candidates:
        try:
            fd = os.open(folder / OWNER_NAME, os.O_RDONLY)
        except OSError:
            continue  # no record: not judged (a run between mkdir and its record, or not ours)
        try:
            owner = Owner.from_json(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
            # the folder is in output's parent: a record naming the same name is for the same output,
            # even when the run saw the folder under another path (a container's mount)
            if owner is None or Path(owner.output).name != output.name:
                continue
            got = _try_flock(fd)
            gone = got if got is not None else owner.process_alive() is False
            if not gone:
                log(f"output: left {folder.name} alone: its run is alive ({owner.describe()})")
                continue
            size = sum(p.lstat().st_size for p in folder.rglob("*"))
            shutil.rmtree(folder, ignore_errors=True)
            if folder.exists():
                log(
                    f"output: could not remove {folder.name}, the staging folder of a run that ended without cleaning "
                    f"up ({owner.describe()}): remove it by hand"
                )
                continue
            removed.append(folder)
            log(
                f"output: removed {folder.name} ({human_bytes(size)}), the staging folder of a run that ended without "
                f"cleaning up ({owner.describe()})"
            )
        finally:
            os.close(fd)
    return removed


@contextmanager
def staged_output(
    output: Path,
    *,
    overwrite: bool,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Iterator[StagedOutput]:
    """Lock ``output``, check it, and yield a staging folder beside it; whatever happens, clean up.

    ``log`` receives a line per stale staging folder removed or left alone; ``warn`` a line when the
    file system cannot lock.

    On leaving, the staging folder is removed (after a ``publish()``, what is left of it), the lock
    released, and parent folders made for it removed unless the output is there.

    Raises:
        OutputBusy: another run is writing ``output``.
        OutputError: the output exists (see ``check_output``) or its parent cannot be written.
    """
    output = output.absolute()
    log = log or (lambda line: None)
    warn = warn or log
    created: list[Path] = []
    parent = output.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    lock: OutputLock | None = None
    staged: StagedOutput | None = None
    owner = Owner.current(output)
    cancel.set_outcome(f"nothing was written to {output}")
    try:
        with cancel.deferred():
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
                lock = OutputLock.acquire(output, owner)
            except OSError as exc:
                raise OutputError(
                    f"cannot write in {output.parent} ({exc.strerror or exc})",
                    "choose an --output in a writable folder",
                ) from None
        if not lock.locked:
            warn(f"output: {output.parent} cannot be locked (flock): runs to the same output are not detected")
        claim = check_output(output, overwrite=overwrite)
        remove_stale(output, log)
        with cancel.deferred():
            try:
                staged = _create_staging(claim, owner)
            except OSError as exc:
                raise OutputError(
                    f"cannot write in {output.parent} ({exc.strerror or exc})",
                    "choose an --output in a writable folder",
                ) from None
            cancel.set_outcome(f"the staging folder was removed, and nothing was written to {output}")
        yield staged
    finally:
        # held back: a signal must not cut the cleanup short (it is raised once the cleanup is done)
        with cancel.deferred():
            if staged is not None:
                staged.discard()
            if lock is not None:
                lock.release()
            if staged is None or not staged.published:
                for folder in created:
                    try:
                        folder.rmdir()
                    except OSError:
                        break
