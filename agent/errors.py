"""Every exception a user can see. Each message says what is wrong and what to do about it."""

from __future__ import annotations

# Exit codes of every command (DESIGN.md): agent.cli maps the errors below onto them.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h; systemd and monitoring know it


class GaugeError(Exception):
    """Base class for errors the agent reports to a person (never as a traceback)."""


class ConfigError(GaugeError):
    """The configuration cannot be used. Carries one line per problem (exit code 78)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class UnreadableFile(GaugeError):
    """A file a person gave the agent cannot be read: missing, not permitted, a directory, a
    FIFO or device, too large. The message names the path and the reason; `missing` says the
    file does not exist (a caller may add a hint; the message itself is translated)."""

    def __init__(self, message: str, *, missing: bool = False):
        super().__init__(message)
        self.missing = missing


class InstallationError(GaugeError):
    """Something the configuration needs is not installed or not reachable on this machine: a
    sensor kind's library, the GPIO back-end. Restarting will not fix it (exit code 78, which
    the systemd unit does not restart on)."""


class SensorError(GaugeError):
    """A sensor driver could not produce a reading. `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ReplayInputError(GaugeError):
    """A recording cannot be replayed at all (unreadable file, missing column)."""


class StatusUnavailable(GaugeError):
    """No status from a running daemon could be read."""
