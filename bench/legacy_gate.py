"""The plausibility gate as it was before issue #7 (one anchor, one rejected track), kept only
as the benchmark's same-run baseline for the cost of the new gate (agent/gate.py). It is not
used by the gauge: it could be captured by one reading (README, "The plausibility gate")."""

from __future__ import annotations


class LegacyPlausibilityGate:
    """Rejects readings that imply the water moved faster than the site allows.

    It judges how fast the *readings* changed, not how long ago the last good one was:
    - A reading is compared with the last accepted level A (at time tA): it is within the
      envelope if |v - A| <= noise + max_rate * (t - tA). A real rise that arrives across a
      silence of the gauge, at an allowed rate, is therefore accepted at once.
    - Rejected readings that follow each other closely form a "track" (an object in the beam, a
      reflection, a stuck code). A reading that continues that track more slowly than it could
      have come from A belongs to the track and stays rejected, however long the track lasts:
      an object in the beam for hours never becomes a water level by waiting.
    - Before there is any accepted level, `acquire_samples` consecutive mutually consistent
      readings are needed, so a spike at start-up is not taken as the water.
    """

    __slots__ = (
        "rate_per_s",
        "noise_m",
        "acquire_samples",
        "anchor_m",
        "anchor_t",
        "track_m",
        "track_t",
        "acquiring",
        "disagreed",
    )

    def __init__(self, max_rate_m_per_min: float, noise_m: float, acquire_samples: int):
        self.rate_per_s = max_rate_m_per_min / 60.0
        self.noise_m = noise_m
        self.acquire_samples = acquire_samples
        self.anchor_m: float | None = None
        self.anchor_t = 0.0
        self.track_m: float | None = None
        self.track_t = 0.0
        self.acquiring: list[tuple[float, float]] = []
        self.disagreed = False  # the last start-up reading contradicted the one before

    def _close(self, a: float, ta: float, b: float, tb: float) -> bool:
        return abs(a - b) <= self.noise_m + self.rate_per_s * abs(tb - ta)

    def judge(self, now: float, level: float) -> bool:
        """True if `level` at `now` is plausible; updates the gate's memory either way."""
        anchor = self.anchor_m
        if anchor is None:
            return self._acquire(now, level)
        elapsed = now - self.anchor_t
        distance = abs(level - anchor)
        within = distance <= self.noise_m + self.rate_per_s * elapsed
        track = self.track_m
        if track is not None and self._close(track, self.track_t, level, now):
            # It continues the rejected track. It is water only if coming from A is the slower
            # explanation (a reading within noise of A always is).
            track_rate = max(0.0, abs(level - track) - self.noise_m) / max(now - self.track_t, 1e-9)
            anchor_rate = max(0.0, distance - self.noise_m) / max(elapsed, 1e-9)
            if not within or track_rate < anchor_rate:
                self.track_m, self.track_t = level, now
                return False
        elif not within:
            self.track_m, self.track_t = level, now  # a new track starts with this jump
            return False
        self.anchor_m, self.anchor_t = level, now
        self.track_m = None
        return True

    def _acquire(self, now: float, level: float) -> bool:
        recent = self.acquiring
        self.disagreed = bool(recent) and not self._close(recent[-1][1], recent[-1][0], level, now)
        if self.disagreed:
            recent.clear()
        recent.append((now, level))
        if len(recent) < self.acquire_samples:
            return False
        self.anchor_m, self.anchor_t = level, now
        recent.clear()
        return True
