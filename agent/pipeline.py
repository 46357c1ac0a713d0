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
from dataclasses import dataclass

from agent import gate as gate_module
from agent.config import Config
from agent.gate import PlausibilityGate
from agent.reasons import Reason
from agent.units import VALUE_KINDS

# Reasons a sample is not a level (agent.reasons). Driver errors ("timeout", "no_echo", ...)
# pass through as their own reason; these are the ones the pipeline itself decides.
NOT_A_NUMBER = Reason.NOT_A_NUMBER
INVALID_VALUE = Reason.INVALID_VALUE
OUT_OF_RANGE = Reason.OUT_OF_RANGE
IMPLAUSIBLE = Reason.IMPLAUSIBLE
FALSE_ECHO = Reason.FALSE_ECHO
UNCONFIRMED = Reason.UNCONFIRMED
ACQUIRING = Reason.ACQUIRING
PIPELINE_REASONS = frozenset(
    {NOT_A_NUMBER, INVALID_VALUE, OUT_OF_RANGE, IMPLAUSIBLE, FALSE_ECHO, UNCONFIRMED, ACQUIRING}
)
# Readings the gate refused: together they raise the `implausible` fault.
REJECTED_REASONS = frozenset({IMPLAUSIBLE, FALSE_ECHO})


@dataclass(slots=True, kw_only=True)
class Measurement:
    """What the pipeline made of one sample. `level_m` is None when it was not a usable level.

    Built by keyword (kw_only), never changed once made. Not `frozen=True`: that sets each field
    through object.__setattr__, 2.0 us per construction against 0.7 (measured 2026-11-30),
    on a path whose whole budget for replay is about 3 us a row (issue #13)."""

    time: float
    raw: float | None  # the value as the sensor gave it (its own unit)
    level_m: float | None  # converted level, also for readings the gate did not accept
    accepted: bool  # passed validity and the plausibility gate
    reason: str | None  # why not accepted (None when accepted)
    smoothed_m: float | None  # rolling median of accepted levels (latest estimate)
    rate_m_per_h: float | None
    valid: bool  # passed validity (a reading, even if not accepted)
    # The gate decided with this sample that what it believed since this time was not the
    # water (an unconfirmed jump withdrawn, or a way back from a level it had followed).
    withdrawn_since: float | None = None


class Validity:
    """Turns a raw value into a distance or level in metres, or a reason it is not one."""

    def __init__(self, config: Config, value_kind: str, unit_to_m: float):
        if value_kind not in VALUE_KINDS:
            raise ValueError(f"value kind must be one of {VALUE_KINDS}, not {value_kind!r}")
        self.unit_to_m = unit_to_m
        self.invalid_values = tuple(config.sensor.invalid_values)
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
        if self.invalid_values and self._is_code(raw):
            return None, INVALID_VALUE
        metres = raw * self.unit_to_m
        if self.is_distance and (metres < self.min_m or metres > self.max_m):
            return None, OUT_OF_RANGE
        return self.convert(raw), None

    def _is_code(self, raw: float) -> bool:
        """A sensor code, matched to nine significant digits: a Modbus register times its
        scale is not exact (9999 x 0.1 = 999.9000000000001, never == 999.9)."""
        for code in self.invalid_values:
            if math.isclose(raw, code, rel_tol=1e-9, abs_tol=1e-9):
                return True
        return False

    def convert(self, raw: float) -> float:
        """The level for a raw value already known to be valid (calibration only)."""
        metres = raw * self.unit_to_m
        if self.is_distance:
            return self.elevation_m - metres
        return self.offset_m + self.scale * metres


class RollingMedian:
    """Median of the last `window` accepted levels.

    Old levels are not aged out after a silence: a reading that continues the level is close to
    them anyway, and when the gate follows a new level it restarts the median (`reset`), so old
    readings never outvote a confirmed new level."""

    __slots__ = ("window", "entries", "ordered")

    def __init__(self, window: int):
        self.window = window
        self.entries: deque[float] = deque()
        self.ordered: list[float] = []

    def reset(self) -> None:
        self.entries.clear()
        self.ordered.clear()

    def add(self, level: float) -> float:
        entries, ordered = self.entries, self.ordered
        if len(entries) >= self.window:
            del ordered[bisect.bisect_left(ordered, entries.popleft())]
        entries.append(level)
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

    def reset(self) -> None:
        """Forget every point (the level it was fed turned out not to be the water)."""
        self.points.clear()
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
        n = self.n
        if n < 3 or now - points[0][0] < self.window_s / 2:
            return None
        # The least-squares slope of the points in the window.
        denominator = n * self.stt - self.st * self.st
        if denominator <= 0:
            return None
        return (n * self.stv - self.st * self.sv) / denominator * 3600.0


class Pipeline:
    """One sample in, one Measurement out. Holds the filter state between samples."""

    def __init__(self, config: Config, value_kind: str = "distance", unit_to_m: float = 1.0):
        """`unit_to_m`: metres per raw unit (0.001 for mm; for a pressure sensor in kPa, the
        metres of water per kPa). `sensor.invalid_values` are compared in the raw unit."""
        self.validity = Validity(config, value_kind, unit_to_m)
        filter_config = config.filter
        self.gate = PlausibilityGate(
            filter_config.max_rate_m_per_min,
            filter_config.noise_m,
            filter_config.acquire_samples,
            filter_config.confirm_samples,
            objects_read_high=value_kind == "distance",
        )
        self.median = RollingMedian(filter_config.window)
        self.rate = RateOfRise(config.alarm.rate.window_s)
        self.smoothed_m: float | None = None
        self.rate_m_per_h: float | None = None

    def process(self, now: float, raw: float | None, reason: str | None = None) -> Measurement:
        """One sample. `raw` None means the driver had no reading; `reason` says why."""
        self.gate.note_sample(now)
        if raw is None:
            return self._no_reading(now, None, reason or Reason.NO_READING)
        level, invalid = self.validity.to_level(raw)
        if level is None:
            assert invalid is not None, "to_level names why a value is not a level"
            return self._no_reading(now, raw, invalid)
        return self._judge(now, raw, level)

    def _judge(self, now: float, raw: float, level: float) -> Measurement:
        """Plausibility, smoothing and rate for a valid reading."""
        gate = self.gate
        verdict = gate.judge(now, level)
        if verdict != gate_module.ACCEPTED:
            return Measurement(
                time=now,
                raw=raw,
                level_m=level,
                accepted=False,
                reason=_REASONS[verdict],
                smoothed_m=self.smoothed_m,
                rate_m_per_h=self.rate_m_per_h,
                valid=True,
                withdrawn_since=gate.withdrawn_since,
            )
        adopted = gate.adopted
        if adopted is not None:
            # The gate follows another level from now on: restart the median from its readings
            # so the old level cannot outvote it. After a way back, what the rate saw since was
            # not the water either.
            self.median.reset()
            if gate.returned:
                self.rate.reset()
            for moment, earlier in adopted[:-1]:
                self.rate.add(moment, self.median.add(earlier))
        smoothed = self.median.add(level)
        self.smoothed_m = smoothed
        self.rate_m_per_h = self.rate.add(now, smoothed)
        return Measurement(
            time=now,
            raw=raw,
            level_m=level,
            accepted=True,
            reason=None,
            smoothed_m=smoothed,
            rate_m_per_h=self.rate_m_per_h,
            valid=True,
            withdrawn_since=gate.withdrawn_since,
        )

    def _no_reading(self, now: float, raw: float | None, reason: str) -> Measurement:
        return Measurement(
            time=now,
            raw=raw,
            level_m=None,
            accepted=False,
            reason=reason,
            smoothed_m=self.smoothed_m,
            rate_m_per_h=self.rate_m_per_h,
            valid=False,
        )

    def process_burst(self, now: float, raws: list[tuple[float | None, str | None]]) -> Measurement:
        """A burst of raw reads taken for one sample: the median of the valid ones is the sample.

        Validity is applied to each read first, so sensor codes in the burst do not drag the
        median. With no valid read, the most frequent reason wins.
        """
        self.gate.note_sample(now)
        valid: list[float] = []
        failures: dict[str, tuple[int, float | None]] = {}
        for raw, reason in raws:
            if raw is not None:
                level, reason = self.validity.to_level(raw)
                if level is not None:
                    valid.append(raw)
                    continue
            key = reason or Reason.NO_READING
            count, _ = failures.get(key, (0, None))
            failures[key] = (count + 1, raw)
        if not valid:
            if not failures:
                return self._no_reading(now, None, Reason.NO_READING)
            worst = max(failures, key=lambda k: failures[k][0])
            return self._no_reading(now, failures[worst][1], worst)
        valid.sort()
        middle = len(valid) // 2
        median = valid[middle] if len(valid) % 2 else (valid[middle - 1] + valid[middle]) / 2.0
        # The median of valid reads is valid: not checked again, since the mean of two middle
        # reads may happen to equal a sensor code (4990 and 5010 mm -> 5000).
        return self._judge(now, median, self.validity.convert(median))


_REASONS = {
    gate_module.UNCONFIRMED: UNCONFIRMED,
    gate_module.REJECTED: IMPLAUSIBLE,
    gate_module.FALSE_ECHO: FALSE_ECHO,
    gate_module.ACQUIRING: ACQUIRING,
}
