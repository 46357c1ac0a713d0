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
from agent.pipeline import (
    IMPLAUSIBLE,
    OUT_OF_RANGE,
    PIPELINE_REASONS,
    REJECTED_REASONS,
    Measurement,
)

FAULTS = ("stale", "implausible", "out_of_range", "stuck", "sensor")


class FaultMonitor:
    def __init__(self, config: Config, start: float):
        self.stale_after_s = config.alarm.stale_after_s
        self.reject_to_fault_s = config.filter.reject_to_fault_s
        self.stuck_after_s = config.filter.stuck_after_s
        self.stuck_tolerance_m = config.filter.stuck_tolerance_m
        self.fail_to_fault = config.sensor.fail_to_fault
        self.active: set[str] = set()
        self.last_valid_t = start  # the gauge has been silent since it started
        self.first_rejected_t: float | None = None
        self.first_out_of_range_t: float | None = None
        self.stuck_value: float | None = None
        self.stuck_since = start
        self.driver_errors = 0
        self.last_reason: str | None = None
        # Refused since the last accepted reading at a height that could be the water (not
        # one the gate has shown to be an echo): the gauge cannot tell where the water is.
        self.unexplained_refusals = False
        self.next = self.next_deadline()  # kept current: read after every sample

    @property
    def holding(self) -> bool:
        """Whether the active faults hold the warning (no step-down, a fresh off-delay after).

        Any fault that leaves the gauge unable to see the water holds it: a gauge lost at the
        crest keeps warning. `implausible` holds it only while some refused reading could be
        the water; refusals that are all at heights the gate has shown to be echoes (learned
        false echoes, a height it followed and withdrew) do not, because the water is seen
        between them and the warning must be free to follow it down."""
        active = self.active
        if not active:
            return False
        if len(active) == 1 and "implausible" in active:
            return self.unexplained_refusals
        return True

    def _due(self) -> list[tuple[str, float]]:
        """(fault, deadline) for every fault not yet active that has a deadline, FAULTS order."""
        active = self.active
        due = []
        if "stale" not in active:
            due.append(("stale", self.last_valid_t + self.stale_after_s))
        if self.first_rejected_t is not None and "implausible" not in active:
            due.append(("implausible", self.first_rejected_t + self.reject_to_fault_s))
        if self.first_out_of_range_t is not None and "out_of_range" not in active:
            due.append(("out_of_range", self.first_out_of_range_t + self.reject_to_fault_s))
        if self.stuck_after_s > 0 and self.stuck_value is not None and "stuck" not in active:
            due.append(("stuck", self.stuck_since + self.stuck_after_s))
        return due

    def next_deadline(self) -> float | None:
        # Written out rather than min(_due()): it runs after every sample.
        active = self.active
        best = None if "stale" in active else self.last_valid_t + self.stale_after_s
        if self.first_rejected_t is not None and "implausible" not in active:
            deadline = self.first_rejected_t + self.reject_to_fault_s
            if best is None or deadline < best:
                best = deadline
        if self.first_out_of_range_t is not None and "out_of_range" not in active:
            deadline = self.first_out_of_range_t + self.reject_to_fault_s
            if best is None or deadline < best:
                best = deadline
        if self.stuck_after_s > 0 and self.stuck_value is not None and "stuck" not in active:
            deadline = self.stuck_since + self.stuck_after_s
            if best is None or deadline < best:
                best = deadline
        return best

    def advance(self, now: float) -> list[tuple[str, bool]]:
        """Raise every fault whose deadline has come."""
        deadline = self.next
        if deadline is None or deadline > now:
            return []
        changes = []
        for fault, deadline in self._due():
            if deadline <= now:
                self.active.add(fault)
                changes.append((fault, True))
        self.next = self.next_deadline()
        return changes

    def observe(self, measurement: Measurement) -> list[tuple[str, bool]]:
        """Take in one sample; returns the faults that changed, in FAULTS order."""
        now = measurement.time
        active = self.active
        changes: list[tuple[str, bool]] = []
        reason = measurement.reason
        self.last_reason = reason
        # The driver answered: a value, or no value for a reason the pipeline gave (not the
        # driver's own error). That clears `sensor`.
        driver_answered = not (measurement.raw is None and reason not in PIPELINE_REASONS)
        if driver_answered:
            self.driver_errors = 0
        else:  # a driver error
            self.driver_errors += 1
            if self.driver_errors >= self.fail_to_fault and "sensor" not in active:
                active.add("sensor")
                changes.append(("sensor", True))
        valid = measurement.valid
        moved = False
        if valid:
            self.last_valid_t = now
            self.first_out_of_range_t = None
            level = measurement.level_m
            assert level is not None, "a valid reading has a level"
            if self.stuck_value is None or abs(level - self.stuck_value) > self.stuck_tolerance_m:
                self.stuck_value = level
                self.stuck_since = now
                moved = True
        elif reason == OUT_OF_RANGE and self.first_out_of_range_t is None:
            self.first_out_of_range_t = now
        accepted = measurement.accepted
        if accepted:
            self.first_rejected_t = None
            self.unexplained_refusals = False
        elif reason in REJECTED_REASONS:
            if self.first_rejected_t is None:
                self.first_rejected_t = now
            if reason == IMPLAUSIBLE:
                self.unexplained_refusals = True
        if active:  # usually empty: a year of quiet samples skips this
            # The faults this sample shows to be over.
            for fault, over in (
                ("sensor", driver_answered),
                ("stale", valid),
                ("out_of_range", valid),
                ("stuck", moved),
                ("implausible", accepted),
            ):
                if over and fault in active:
                    active.discard(fault)
                    changes.append((fault, False))
        deadline = self.next = self.next_deadline()
        if deadline is not None and deadline <= now:
            changes.extend(self.advance(now))
        if len(changes) > 1:
            changes.sort(key=lambda change: FAULTS.index(change[0]))
        return changes
