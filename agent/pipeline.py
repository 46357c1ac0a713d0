"""The measurement pipeline: raw sensor values in, a trustworthy water level out.

    raw value -> validity (range, sensor codes, NaN) -> level conversion (calibration)
              -> plausibility gate (max rate of change) -> rolling median -> rate of rise

Pure: no I/O, no clock. `now` is passed in (seconds; monotonic in the daemon, epoch in replay).
The daemon, the replay command and the tests all drive this same code.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

from agent.config import Config

# Reasons a sample is not a level. Driver errors ("timeout", "no_echo", ...) pass through as
# their own reason; these are the ones the pipeline itself decides.
NOT_A_NUMBER = "not_a_number"
INVALID_VALUE = "invalid_value"
OUT_OF_RANGE = "out_of_range"
IMPLAUSIBLE = "implausible"
ACQUIRING = "acquiring"
PIPELINE_REASONS = frozenset({NOT_A_NUMBER, INVALID_VALUE, OUT_OF_RANGE, IMPLAUSIBLE, ACQUIRING})

VALUE_KINDS = ("distance", "level")
UNIT_TO_M = {"m": 1.0, "cm": 0.01, "mm": 0.001, "ft": 0.3048}


class Measurement:
    """What the pipeline made of one sample. `level_m` is None when it was not a usable level."""

    __slots__ = ("time", "raw", "level_m", "accepted", "reason", "smoothed_m", "rate_m_per_h",
                 "valid")

    def __init__(self, time: float, raw: float | None, level_m: float | None, accepted: bool,
                 reason: str | None, smoothed_m: float | None, rate_m_per_h: float | None,
                 valid: bool):
        self.time = time
        self.raw = raw                  # the value as the sensor gave it (its own unit)
        self.level_m = level_m          # converted level, also for rejected readings
        self.accepted = accepted        # passed validity and the plausibility gate
        self.reason = reason            # why not accepted (None when accepted)
        self.smoothed_m = smoothed_m    # rolling median of accepted levels (latest estimate)
        self.rate_m_per_h = rate_m_per_h
        self.valid = valid              # passed validity (a reading, even if implausible)

    def __repr__(self) -> str:
        return (f"Measurement(time={self.time}, level_m={self.level_m}, accepted={self.accepted},"
                f" reason={self.reason!r}, smoothed_m={self.smoothed_m})")


class Validity:
    """Turns a raw value into a distance or level in metres, or a reason it is not one."""

    def __init__(self, config: Config, value_kind: str, unit_to_m: float):
        if value_kind not in VALUE_KINDS:
            raise ValueError(f"value kind must be one of {VALUE_KINDS}, not {value_kind!r}")
        self.unit_to_m = unit_to_m
        self.invalid_values = frozenset(config.sensor.invalid_values)
        self.is_distance = value_kind == "distance"
        self.min_m = config.sensor.min_range_m
        self.max_m = config.sensor.max_range_m
        calibration = config.calibration
        self.elevation_m = calibration.sensor_elevation_m
        self.offset_m = calibration.offset_m
        self.scale = calibration.scale

    def to_level(self, raw: float) -> tuple[float | None, str | None]:
        if raw != raw or raw in (math.inf, -math.inf):  # NaN or infinite
            return None, NOT_A_NUMBER
        if raw in self.invalid_values:
            return None, INVALID_VALUE
        metres = raw * self.unit_to_m
        if self.is_distance and (metres < self.min_m or metres > self.max_m):
            return None, OUT_OF_RANGE
        return self.convert(raw), None

    def convert(self, raw: float) -> float:
        """The level for a raw value already known to be valid (calibration only)."""
        metres = raw * self.unit_to_m
        if self.is_distance:
            return self.elevation_m - metres
        return self.offset_m + self.scale * metres


class PlausibilityGate:
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

    __slots__ = ("rate_per_s", "noise_m", "acquire_samples", "anchor_m", "anchor_t",
                 "track_m", "track_t", "acquiring", "disagreed")

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


class RollingMedian:
    """Median of the last `window` accepted levels; levels older than `max_age_s` drop out so
    that after a silence old readings do not outvote new ones."""

    __slots__ = ("window", "max_age_s", "entries", "ordered")

    def __init__(self, window: int, max_age_s: float):
        self.window = window
        self.max_age_s = max_age_s
        self.entries: deque[tuple[float, float]] = deque()
        self.ordered: list[float] = []

    def add(self, now: float, level: float) -> float:
        entries, ordered = self.entries, self.ordered
        while entries and (len(entries) >= self.window or now - entries[0][0] > self.max_age_s):
            _, old = entries.popleft()
            del ordered[bisect.bisect_left(ordered, old)]
        entries.append((now, level))
        bisect.insort(ordered, level)
        n = len(ordered)
        middle = n // 2
        if n % 2:
            return ordered[middle]
        return (ordered[middle - 1] + ordered[middle]) / 2.0


class RateOfRise:
    """Least-squares slope of the smoothed level over the last `window_s` seconds, in m/h.

    Running sums keep it O(1) per sample; times are taken relative to a reference that is
    renewed as the window moves on so the sums do not lose precision over a year of epoch seconds.
    None until the points cover at least half the window (a slope from two points a second
    apart says nothing about the river).
    """

    __slots__ = ("window_s", "points", "t_ref", "n", "st", "sv", "stt", "stv")

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.points: deque[tuple[float, float]] = deque()
        self.t_ref = 0.0
        self._reset_sums()

    def _reset_sums(self) -> None:
        self.n = 0
        self.st = self.sv = self.stt = self.stv = 0.0

    def _rebuild(self) -> None:
        """The sums from scratch, relative to the oldest point in the window."""
        points = self.points
        self.t_ref = points[0][0] if points else 0.0
        xs = [t - self.t_ref for t, _ in points]
        self.n = len(points)
        self.st = sum(xs)
        self.sv = sum(v for _, v in points)
        self.stt = sum(x * x for x in xs)
        self.stv = sum(x * v for x, (_, v) in zip(xs, points))

    def add(self, now: float, level: float) -> float | None:
        points = self.points
        if not points:
            self.t_ref = now
            self._reset_sums()
        points.append((now, level))
        # The sums are updated inline (this runs for every sample of a year-long replay).
        x = now - self.t_ref
        self.n += 1
        self.st += x
        self.sv += level
        self.stt += x * x
        self.stv += x * level
        horizon = now - self.window_s
        if points[0][0] < horizon:
            while points[0][0] < horizon:
                t, v = points.popleft()
                x = t - self.t_ref
                self.n -= 1
                self.st -= x
                self.sv -= v
                self.stt -= x * x
                self.stv -= x * v
            if now - self.t_ref > 4 * self.window_s:
                self._rebuild()  # keep x = t - t_ref small: amortised O(1), precision ~1e-12
        if self.n < 3 or now - points[0][0] < self.window_s / 2:
            return None
        return self.rate()

    def rate(self) -> float | None:
        points = self.points
        if self.n < 3 or points[-1][0] - points[0][0] < self.window_s / 2:
            return None
        n = self.n
        denominator = n * self.stt - self.st * self.st
        if denominator <= 0:
            return None
        slope_per_s = (n * self.stv - self.st * self.sv) / denominator
        return slope_per_s * 3600.0


class Pipeline:
    """One sample in, one Measurement out. Holds the filter state between samples."""

    def __init__(self, config: Config, value_kind: str = "distance", unit_to_m: float = 1.0):
        """`unit_to_m`: metres per raw unit (0.001 for mm; for a pressure sensor in kPa, the
        metres of water per kPa). `sensor.invalid_values` are compared in the raw unit."""
        self.validity = Validity(config, value_kind, unit_to_m)
        filter_config = config.filter
        self.gate = PlausibilityGate(filter_config.max_rate_m_per_min, filter_config.noise_m,
                                     filter_config.acquire_samples)
        self.median = RollingMedian(filter_config.window, config.alarm.stale_after_s)
        rate = config.alarm.rate
        self.rate = RateOfRise(rate.window_s)
        self.smoothed_m: float | None = None
        self.rate_m_per_h: float | None = None

    def process(self, now: float, raw: float | None, reason: str | None = None) -> Measurement:
        """One sample. `raw` None means the driver had no reading; `reason` says why."""
        if raw is None:
            return self._no_reading(now, None, reason or "no_reading")
        level, invalid = self.validity.to_level(raw)
        if level is None:
            return self._no_reading(now, raw, invalid)
        return self._judge(now, raw, level)

    def _judge(self, now: float, raw: float, level: float) -> Measurement:
        """Plausibility, smoothing and rate for a valid reading."""
        gate = self.gate
        if not gate.judge(now, level):
            # Start-up readings that agree so far are just early; ones that disagree are not.
            reason = ACQUIRING if gate.anchor_m is None and not gate.disagreed else IMPLAUSIBLE
            return Measurement(now, raw, level, False, reason, self.smoothed_m,
                               self.rate_m_per_h, True)
        smoothed = self.median.add(now, level)
        self.smoothed_m = smoothed
        self.rate_m_per_h = self.rate.add(now, smoothed)
        return Measurement(now, raw, level, True, None, smoothed, self.rate_m_per_h, True)

    def _no_reading(self, now: float, raw: float | None, reason: str) -> Measurement:
        return Measurement(now, raw, None, False, reason, self.smoothed_m, self.rate_m_per_h,
                           False)

    def process_burst(self, now: float, raws: list[tuple[float | None, str | None]]) -> Measurement:
        """A burst of raw reads taken for one sample: the median of the valid ones is the sample.

        Validity is applied to each read first, so sensor codes in the burst do not drag the
        median. With no valid read, the most frequent reason wins.
        """
        valid: list[float] = []
        failures: dict[str, tuple[int, float | None]] = {}
        for raw, reason in raws:
            if raw is not None:
                level, reason = self.validity.to_level(raw)
                if level is not None:
                    valid.append(raw)
                    continue
            key = reason or "no_reading"
            count, _ = failures.get(key, (0, None))
            failures[key] = (count + 1, raw)
        if not valid:
            if not failures:
                return self._no_reading(now, None, "no_reading")
            worst = max(failures, key=lambda k: failures[k][0])
            return self._no_reading(now, failures[worst][1], worst)
        valid.sort()
        middle = len(valid) // 2
        median = valid[middle] if len(valid) % 2 else (valid[middle - 1] + valid[middle]) / 2.0
        # The median of valid reads is valid: not checked again, since the mean of two middle
        # reads may happen to equal a sensor code (4990 and 5010 mm -> 5000).
        return self._judge(now, median, self.validity.convert(median))
