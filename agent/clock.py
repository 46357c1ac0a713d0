"""Time on a Raspberry Pi, which has no real-time clock.

After power returns the wall clock starts wherever fake-hwclock left it (or at 1970) and jumps
when NTP synchronises, forward or back, possibly by days. So:
- every delay, interval and deadline in the gauge runs on the monotonic clock (the daemon passes
  `time.monotonic` as `now`); the wall clock only stamps records;
- records stamped before the clock is synchronised say so (`clock_synchronised` false);
- what must survive a restart is aged with the boot's own clock (CLOCK_BOOTTIME, which also
  counts suspend) together with the boot id, never with the wall clock.
"""

from __future__ import annotations

import time
from pathlib import Path

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
TIMESYNC_DIR = Path("/run/systemd/timesync")


def boot_id(path: Path = BOOT_ID_PATH) -> str | None:
    """This boot's id (a new one at every boot), or None where the kernel does not say."""
    try:
        return path.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def since_boot() -> float:
    """Seconds since this boot, including suspend; never stepped by NTP."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def clock_synchronised(timesync_dir: Path = TIMESYNC_DIR) -> bool | None:
    """Whether the wall clock has been synchronised since boot, per systemd-timesyncd (what
    Raspberry Pi OS runs); None where nothing says either way (another NTP client, no systemd).
    Read from the flag file: the unit's sandbox forbids the clock system calls."""
    if not timesync_dir.is_dir():
        return None
    return (timesync_dir / "synchronized").exists()


class SyncWatch:
    """`clock_synchronised`, asked at most every `every_s` (it is on every record's path)."""

    def __init__(self, every_s: float = 30.0, probe=clock_synchronised, monotonic=time.monotonic):
        self.every_s = every_s
        self.probe = probe
        self.monotonic = monotonic
        self.checked_at: float | None = None
        self.value: bool | None = None

    def __call__(self) -> bool | None:
        now = self.monotonic()
        if self.checked_at is None or now - self.checked_at >= self.every_s or self.value is False:
            # Until it is synchronised, ask every time: the first synchronised record should
            # not be marked for half a minute more.
            self.value = self.probe()
            self.checked_at = now
        return self.value
