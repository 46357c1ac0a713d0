"""Measurement faults: when the gauge can no longer be trusted to see the water.

Pure and time-driven: every fault has a deadline, so it fires at the moment it would fire live,
also inside a silence of the gauge (`next_deadline`, `advance`). Faults are reported separately
from the warning state and never lower it.

| fault          | raised when                                                       | cleared by |
| -------------- | ----------------------------------------------------------------- | ---------- |
| `stale`        | no valid reading for `alarm.stale_after_s`                        | a valid reading |
| `implausible`  | readings rejected by the gate for `filter.reject_to_fault_s`      | an accepted reading |
| `out_of_range` | only out-of-range readings for `filter.reject_to_fault_s`         | a valid reading |
| `stuck`        | valid readings unchanged (within `filter.stuck_tolerance_m`) for `filter.stuck_after_s` | a change |
| `sensor`       | `sensor.fail_to_fault` driver errors in a row                     | any reading from the driver |
"""

from __future__ import annotations

from agent.config import Config
from agent.pipeline import IMPLAUSIBLE, OUT_OF_RANGE, PIPELINE_REASONS, Measurement

FAULTS = ("stale", "implausible", "out_of_range", "stuck", "sensor")


class FaultMonitor:
    def __init__(self, config: Config, start: float):
        self.stale_after_s = config.alarm.stale_after_s
        self.reject_to_fault_s = config.filter.reject_to_fault_s
        self.stuck_after_s = config.filter.stuck_after_s
        self.stuck_tolerance_m = config.filter.stuck_tolerance_m
        self.fail_to_fault = config.sensor.fail_to_fault
        self.active: set[str] = set()
        self.last_valid_t = start          # the gauge has been silent since it started
        self.first_rejected_t: float | None = None
        self.first_out_of_range_t: float | None = None
        self.stuck_value: float | None = None
        self.stuck_since = start
        self.driver_errors = 0
        self.last_reason: str | None = None

    def _deadlines(self) -> dict[str, float]:
        deadlines = {"stale": self.last_valid_t + self.stale_after_s}
        if self.first_rejected_t is not None:
            deadlines["implausible"] = self.first_rejected_t + self.reject_to_fault_s
        if self.first_out_of_range_t is not None:
            deadlines["out_of_range"] = self.first_out_of_range_t + self.reject_to_fault_s
        if self.stuck_after_s > 0 and self.stuck_value is not None:
            deadlines["stuck"] = self.stuck_since + self.stuck_after_s
        return deadlines

    def next_deadline(self) -> float | None:
        pending = [t for fault, t in self._deadlines().items() if fault not in self.active]
        return min(pending) if pending else None

    def advance(self, now: float) -> list[tuple[str, bool]]:
        """Raise every fault whose deadline has come."""
        changes = []
        for fault, deadline in self._deadlines().items():
            if fault not in self.active and deadline <= now:
                self.active.add(fault)
                changes.append((fault, True))
        changes.sort(key=lambda change: FAULTS.index(change[0]))
        return changes

    def observe(self, measurement: Measurement) -> list[tuple[str, bool]]:
        """Take in one sample; returns the faults that changed, in FAULTS order."""
        now = measurement.time
        before = set(self.active)
        reason = measurement.reason
        self.last_reason = reason
        is_driver_error = measurement.raw is None and reason not in PIPELINE_REASONS
        if is_driver_error:
            self.driver_errors += 1
            if self.driver_errors >= self.fail_to_fault:
                self.active.add("sensor")
        else:
            self.driver_errors = 0
            self.active.discard("sensor")
        if measurement.valid:
            self.last_valid_t = now
            self.first_out_of_range_t = None
            self.active.discard("stale")
            self.active.discard("out_of_range")
            self._observe_stuck(now, measurement.level_m)
        elif reason == OUT_OF_RANGE and self.first_out_of_range_t is None:
            self.first_out_of_range_t = now
        if measurement.accepted:
            self.first_rejected_t = None
            self.active.discard("implausible")
        elif reason == IMPLAUSIBLE and self.first_rejected_t is None:
            self.first_rejected_t = now
        self.advance(now)
        return [(fault, fault in self.active) for fault in FAULTS
                if (fault in self.active) != (fault in before)]

    def _observe_stuck(self, now: float, level: float | None) -> None:
        if level is None:
            return
        if self.stuck_value is None or abs(level - self.stuck_value) > self.stuck_tolerance_m:
            self.stuck_value = level
            self.stuck_since = now
            self.active.discard("stuck")
