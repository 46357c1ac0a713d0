"""Opening the files a person hands the agent: configuration, calibration, the token, the status
file, recordings to replay.

Only regular files are read. A FIFO, a device such as /dev/zero or a directory given by mistake
gets a clear error at once instead of a hang or a read that never ends; small files (everything
but recordings) have a size limit. The open itself is non-blocking, so even opening a FIFO with
no writer returns at once.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.errors import UnreadableFile
from agent.i18n import _

# Configuration, calibration, token and status files are a few KiB; a megabyte is a mistake.
SMALL_FILE_LIMIT = 1024 * 1024


def open_regular(path: str | os.PathLike) -> int:
    """A descriptor for `path` in blocking mode, or UnreadableFile saying why not."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UnreadableFile(_("{path}: no such file").format(path=path), missing=True) from None
    except PermissionError:
        raise UnreadableFile(
            _("{path}: not readable by this user (check its permissions)").format(path=path)
        ) from None
    except (OSError, ValueError) as error:  # ValueError: a NUL in the path
        raise UnreadableFile(
            _("{path}: cannot be opened ({reason})").format(path=path, reason=_reason(error))
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UnreadableFile(_("{path}: is a directory, not a file").format(path=path))
        if not stat.S_ISREG(mode):
            raise UnreadableFile(
                _(
                    "{path}: is not a regular file (a FIFO, a device or a socket);"
                    " give the path of a file"
                ).format(path=path)
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small_file(path: str | os.PathLike, limit: int = SMALL_FILE_LIMIT) -> bytes:
    """The whole of a small regular file, or UnreadableFile saying why not."""
    fd = open_regular(path)
    try:
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise UnreadableFile(
            _("{path}: cannot be read ({reason})").format(path=path, reason=_reason(error))
        ) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnreadableFile(
            _("{path}: larger than {size} KiB; this is not the file it should be").format(
                path=path, size=limit // 1024
            )
        )
    return data


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        return os.strerror(error.errno)
    return str(error)


def is_regular_file(path: str | os.PathLike) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False
