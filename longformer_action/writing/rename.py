"""Rename without replacing what appeared meanwhile: Linux's ``renameat2`` (no-replace and exchange)."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

# renameat2(2) flags and the "current directory" file descriptor (Linux, <linux/fs.h> and <fcntl.h>).
AT_FDCWD = -100


RENAME_NOREPLACE = 1


RENAME_EXCHANGE = 2


# errno values meaning "this kernel, C library or file system cannot do it", for renameat2 and flock
UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOLCK}


class Unsupported(Exception):
    """renameat2 is missing here (not Linux, an old C library or kernel, or a file system without it)."""


def renameat2(source: Path, target: Path, flags: int) -> None:
    # glibc has renameat2 since 2.28 (the image's Debian has 2.36); ctypes, since Python's os has no binding
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        raise Unsupported from None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    if function(AT_FDCWD, os.fsencode(source), AT_FDCWD, os.fsencode(target), flags) == 0:
        return
    code = ctypes.get_errno()
    if code in UNSUPPORTED:
        raise Unsupported
    raise OSError(code, os.strerror(code), str(source), None, str(target))
