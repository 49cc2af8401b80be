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

import errno
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .. import cancel
from ..errors import OutputError
from ..progress import human_bytes
from . import lock
from .claim import Claim, check_output, describe
from .lock import MODEL_DIR, OWNER_NAME, PREFIX, STAGING_NAME, STAGING_SUFFIX, OutputLock, Owner
from .rename import RENAME_EXCHANGE, RENAME_NOREPLACE, Unsupported, renameat2


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
            renameat2(self.path, self.output, RENAME_NOREPLACE)
        except Unsupported:
            if os.path.lexists(self.output):
                raise self._changed(f"{describe(self.output)} appeared there") from None
            os.rename(self.path, self.output)  # unguarded for this instant: see the module's docstring
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise self._changed(f"{describe(self.output)} appeared there") from None
            raise

    def _publish_replacing(self) -> None:
        try:
            renameat2(self.path, self.output, RENAME_EXCHANGE)
        except Unsupported:
            self._publish_replacing_portably()
            return
        except FileNotFoundError:
            raise self._changed("it was removed") from None
        # self.path now holds what was at output, and output the new folder
        different = self.claim.differences(self.path)
        if different:
            try:
                renameat2(self.path, self.output, RENAME_EXCHANGE)  # swap back: theirs to output, ours to staging
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
                different = f"{describe(self.output)} appeared there"
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
        lock.try_flock(fd)  # held until the staging folder is removed: while held, its owner is alive
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
        candidates = sorted(p for p in output.parent.iterdir() if STAGING_NAME.match(p.name))
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
            got = lock.try_flock(fd)
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
    held: OutputLock | None = None
    staged: StagedOutput | None = None
    owner = Owner.current(output)
    cancel.set_outcome(f"nothing was written to {output}")
    try:
        with cancel.deferred():
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
                held = OutputLock.acquire(output, owner)
            except OSError as exc:
                raise OutputError(
                    f"cannot write in {output.parent} ({exc.strerror or exc})",
                    "choose an --output in a writable folder",
                ) from None
        if not held.locked:
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
            if held is not None:
                held.release()
            if staged is None or not staged.published:
                for folder in created:
                    try:
                        folder.rmdir()
                    except OSError:
                        break
