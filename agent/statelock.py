"""One daemon per state directory.

Two daemons on one outbox (a technician starting one by hand beside the service) would hand
out the same sequence numbers twice, and upstream would drop the second as duplicates. An
exclusive `flock` on a file in the state directory keeps the second one out, with a message
that says who holds it. The kernel drops the lock when the holder dies, however it dies.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from agent.errors import GaugeError
from agent.i18n import _

log = logging.getLogger("gauge-agent")

LOCK_FILE_NAME = "gauge-agent.lock"


class StateDirectoryBusy(GaugeError):
    """Another gauge-agent runs on this state directory."""


class StateLock:
    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_FILE_NAME
        self.fd: int | None = None

    def acquire(self) -> StateLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as error:
            # A read-only or full card: the outbox will wait for it too. Running unlocked is
            # better than not running the siren.
            log.warning(
                "cannot take the lock %s (%s); going on without it", self.path, error.strerror
            )
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.read(fd, 32).decode("ascii", errors="replace").strip() or "?"
            os.close(fd)
            raise StateDirectoryBusy(
                _(
                    "another gauge-agent (pid {pid}) is running on {directory}; stop it first"
                    " (sudo systemctl stop gauge-agent), or give this one another"
                    " storage.state_dir"
                ).format(pid=holder, directory=self.path.parent)
            ) from None
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as error:
            # A full card: the lock itself holds (it lives in the kernel); only the holder's
            # pid, which serves the second daemon's message, could not be written.
            log.warning(
                "took the lock %s but cannot write the pid into it (%s)", self.path, error.strerror
            )
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None
