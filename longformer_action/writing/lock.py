"""The output's lock and owner records: one run per output, and whether a staging folder's run is alive.

See ``staging.py`` for the files a run keeps beside ``--output`` and the rules they keep."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..digests import sha256_hex
from ..errors import OutputError
from .rename import UNSUPPORTED

PREFIX = ".longformer-convert-"


LOCK_SUFFIX = ".lock"


STAGING_SUFFIX = ".partial"


OWNER_NAME = "owner.json"


#: The folder inside the staging folder that becomes ``--output``.
MODEL_DIR = "model"


STAGING_NAME = re.compile(rf"^{re.escape(PREFIX)}[0-9a-f]{{16}}{re.escape(STAGING_SUFFIX)}$")


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


def try_flock(fd: int) -> bool | None:
    """``True``: locked now; ``False``: another open file holds it; ``None``: the file system cannot lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in UNSUPPORTED:
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


def lock_path(output: Path) -> Path:
    """The lock file of ``output``: beside it, named by a digest of its name (fixed size)."""
    digest = sha256_hex(os.fsencode(output.name))[:16]
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
                got = try_flock(fd)
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
