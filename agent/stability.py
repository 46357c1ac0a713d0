"""Is the sensor reading steadily? The running figures a technician watches before trusting a
reading (`gauge-agent read`) or calibrating against the staff gauge. Pure: no clock, no I/O."""

from __future__ import annotations

import math
from collections import deque

from agent.i18n import _

STABLE_READINGS = 10  # the last this many plausible readings decide
STABLE_SD_M = 0.01  # ... and their standard deviation must be within this (1 cm)


class LevelStats:
    """Running mean, standard deviation and count of every plausible level (Welford), and
    whether the last STABLE_READINGS of them agree within STABLE_SD_M."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0
        self.recent: deque[float] = deque(maxlen=STABLE_READINGS)

    def add(self, level_m: float) -> None:
        self.count += 1
        delta = level_m - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (level_m - self.mean)
        self.recent.append(level_m)

    @property
    def sd(self) -> float:
        return math.sqrt(self._m2 / (self.count - 1)) if self.count > 1 else 0.0

    @property
    def recent_sd(self) -> float:
        n = len(self.recent)
        if n < 2:
            return 0.0
        mean = sum(self.recent) / n
        return math.sqrt(sum((x - mean) ** 2 for x in self.recent) / (n - 1))

    @property
    def stable(self) -> bool:
        return len(self.recent) == STABLE_READINGS and self.recent_sd <= STABLE_SD_M

    def verdict(self) -> str:
        """One line for a person: stable, or what it still waits for."""
        if self.stable:
            return _("stable (last {n} within {sd:.1f} cm sd)").format(
                n=STABLE_READINGS, sd=self.recent_sd * 100
            )
        missing = STABLE_READINGS - len(self.recent)
        if missing > 0:
            return _("not stable yet ({missing} more plausible readings needed)").format(
                missing=missing
            )
        spread = _("not stable yet (last {n} spread {sd:.1f} cm sd, needs {limit:.0f} cm or less)")
        return spread.format(n=STABLE_READINGS, sd=self.recent_sd * 100, limit=STABLE_SD_M * 100)
