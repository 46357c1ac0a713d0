"""The alarm engine: smoothed levels and faults in, warning state and events out.

Pure: no I/O, no clock, no sleeping. `now` is passed in. Two entry points:
- `update(measurement)` for each sample, after
- `run_until(now)`, which fires every delay and fault whose moment has come, each at its own
  moment, so a replay of a recording with a gap reports a fault at the time it would have fired
  live and the daemon can sleep exactly until `next_deadline()`.

Semantics (the README explains them for technicians):
- Levels ascend. A level is raised when the smoothed level is at or above `above_m` for
  `on_delay_s`; escalation is never held back by an off-delay.
- The state steps down only when the level has been below `above_m - deadband_m` of the current
  level for `off_delay_s`, and then goes to the level the water is at (with the deadband).
- The rate alarm (least-squares rise over `alarm.rate.window_s`) lifts the warning to at least
  `alarm.rate.raises`; it clears below `clear_m_per_h` after the off-delay.
- Faults are separate and never lower anything: while a fault leaves the gauge unable to see the
  water nothing steps down, because a gauge lost at the crest must keep warning; the off-delay
  starts afresh after it. Refusals at heights the gate has shown to be echoes do not hold the
  warning (`FaultMonitor.holding`): the water is seen between them.
"""

from __future__ import annotations

import json

from agent.config import Config
from agent.faults import FaultMonitor
from agent.pipeline import Measurement
from agent.units import format_utc


class Event:
    """One thing that happened, as the replay prints it and the outbox will store it."""

    __slots__ = ("time", "kind", "data")

    def __init__(self, time: float, kind: str, data: dict):
        self.time = time
        self.kind = kind
        self.data = data

    def as_dict(self, time_text: str | None = None) -> dict:
        return {
            "time": time_text if time_text is not None else self.time,
            "kind": self.kind,
            **self.data,
        }

    def to_json(self) -> str:
        """JSON line with `time` as UTC ISO 8601 (`time` must then be epoch seconds)."""
        return json.dumps(self.as_dict(format_utc(self.time)))

    def __repr__(self) -> str:
        return f"Event({self.time!r}, {self.kind!r}, {self.data!r})"


def _mm(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class AlarmEngine:
    def __init__(self, config: Config, start: float):
        alarm = config.alarm
        self.config = config
        self.names = ["normal"] + config.level_names()
        self.thresholds = [level.above_m for level in alarm.levels]
        self.deadband_m = alarm.deadband_m
        self.on_delay_s = alarm.on_delay_s
        self.off_delay_s = alarm.off_delay_s
        rate = alarm.rate
        self.rate_enabled = rate.enabled
        self.rate_rise = rate.rise_m_per_h
        self.rate_clear = rate.effective_clear_m_per_h
        self.rate_raises = self.names.index(rate.raises) if rate.enabled else 0
        self.faults = FaultMonitor(config, start)

        self.state = 0  # index into names: the threshold state
        self.level_m: float | None = None  # latest smoothed level
        self.rate_m_per_h: float | None = None
        self.raise_since: list[float | None] = [None] * len(self.thresholds)
        self.clear_since: float | None = None
        self.rate_active = False
        self.rate_since: float | None = None
        self.rate_clear_since: float | None = None
        self.siren_pattern = "off"
        self._next_deadline = self._compute_next_deadline()

    # -- public view -------------------------------------------------------------------------
    @property
    def state_name(self) -> str:
        return self.names[self.state]

    @property
    def warning(self) -> int:
        """The warning the outputs show: the threshold state, lifted by the rate alarm."""
        if self.rate_active and self.rate_raises > self.state:
            return self.rate_raises
        return self.state

    @property
    def warning_name(self) -> str:
        return self.names[self.warning]

    @property
    def active_faults(self) -> list[str]:
        return sorted(self.faults.active)

    def restore(self, state_name: str, rate_active: bool) -> bool:
        """Take up the warning a previous run of the daemon left (after a watchdog restart or a
        crash at the crest). Only raises: it cannot lower anything, and the normal off-delay
        steps it down once fresh readings show the water below. False if the name is unknown
        (the levels were reconfigured)."""
        if state_name not in self.names:
            return False
        self.state = max(self.state, self.names.index(state_name))
        self.rate_active = self.rate_active or (rate_active and self.rate_enabled)
        self.siren_pattern = self.config.siren_pattern_for(self.warning)
        self._next_deadline = self._compute_next_deadline()
        return True

    # -- time --------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """The next moment at which something changes if no sample arrives before it."""
        return self._next_deadline

    def _compute_next_deadline(self) -> float | None:
        best = self.faults.next
        raise_since = self.raise_since
        for index in range(self.state, len(raise_since)):
            since = raise_since[index]
            if since is not None and (best is None or since + self.on_delay_s < best):
                best = since + self.on_delay_s
        if self.rate_active:
            since, delay = self.rate_clear_since, self.off_delay_s
        else:
            since, delay = self.rate_since, self.on_delay_s
        if since is not None and (best is None or since + delay < best):
            best = since + delay
        if self.clear_since is not None and (
            best is None or self.clear_since + self.off_delay_s < best
        ):
            best = self.clear_since + self.off_delay_s
        return best

    def run_until(self, now: float) -> list[Event]:
        """Fire everything due up to `now`, each at its own moment."""
        deadline = self._next_deadline
        if deadline is None or deadline > now:
            return []
        events: list[Event] = []
        while deadline is not None and deadline <= now:
            before = self._snapshot()
            events.extend(self._advance(deadline))
            previous, deadline = deadline, self._next_deadline
            if deadline == previous and self._snapshot() == before:
                break  # nothing could change at this deadline (guards against a spin)
        return events

    def _snapshot(self) -> tuple:
        return (
            self.state,
            self.rate_active,
            frozenset(self.faults.active),
            self.clear_since,
            self.rate_since,
            self.rate_clear_since,
            tuple(self.raise_since),
        )

    def _fault_event(self, now: float, fault: str, active: bool) -> Event:
        data = {"fault": fault, "active": active}
        if fault == "sensor" and active:
            data["reason"] = self.faults.last_reason  # what the driver said, e.g. "timeout"
        return Event(now, "fault", data)

    def _advance(self, now: float) -> list[Event]:
        events = [self._fault_event(now, fault, True) for fault, _ in self.faults.advance(now)]
        self._evaluate(now, events)
        self._next_deadline = self._compute_next_deadline()
        return events

    # -- samples -----------------------------------------------------------------------------
    def update(self, measurement: Measurement) -> list[Event]:
        """Take in one sample (call `run_until(measurement.time)` first)."""
        now = measurement.time
        changes = self.faults.observe(measurement)
        events = (
            [self._fault_event(now, fault, active) for fault, active in changes] if changes else []
        )
        if measurement.accepted:
            level = measurement.smoothed_m
            assert level is not None, "an accepted reading has a smoothed level"
            self.level_m = level
            raise_since = self.raise_since
            if level < self.thresholds[0]:
                # The common case in a year of data: below every level (thresholds ascend).
                if raise_since[0] is not None:
                    raise_since[:] = [None] * len(raise_since)
            else:
                for i, threshold in enumerate(self.thresholds):
                    if level >= threshold:
                        if raise_since[i] is None:
                            raise_since[i] = now
                    else:
                        raise_since[i] = None
            self.rate_m_per_h = measurement.rate_m_per_h
            if self.rate_enabled:
                self._observe_rate(now, measurement.rate_m_per_h)
        self._evaluate(now, events)
        self._next_deadline = self._compute_next_deadline()
        return events

    def _observe_rate(self, now: float, rate: float | None) -> None:
        if rate is None:  # too little data for a slope: no evidence either way
            self.rate_since = None
            self.rate_clear_since = None
            return
        if rate >= self.rate_rise:
            if self.rate_since is None:
                self.rate_since = now
            self.rate_clear_since = None
        else:
            self.rate_since = None
            if rate < self.rate_clear:
                if self.rate_clear_since is None:
                    self.rate_clear_since = now
            else:
                self.rate_clear_since = None

    def _evaluate(self, now: float, events: list[Event]) -> None:
        if (
            not self.state
            and not self.rate_active
            and self.rate_since is None
            and (not self.raise_since or self.raise_since[0] is None)
        ):
            # Normal with nothing on its way up: nothing below can change (the common case:
            # most of a year of samples; a replay runs this for every one).
            return
        warning_before = self.warning
        if self.state < len(self.thresholds) and self.raise_since[self.state] is not None:
            self._escalate(now, events)
        measuring = not self.faults.holding
        if self.state:
            self._step_down(now, events, measuring)
        if self.rate_since is not None or self.rate_clear_since is not None:
            self._rate_transitions(now, events, measuring)
        if self.warning != warning_before:
            pattern = self.config.siren_pattern_for(self.warning)
            if pattern != self.siren_pattern:
                self.siren_pattern = pattern
                events.append(Event(now, "siren", {"pattern": pattern}))

    def _escalate(self, now: float, events: list[Event]) -> None:
        for index in range(len(self.thresholds), self.state, -1):
            since = self.raise_since[index - 1]
            if since is not None and now - since >= self.on_delay_s:
                events.append(
                    Event(
                        now,
                        "level",
                        {
                            "state": self.names[index],
                            "previous": self.names[self.state],
                            "level_m": _mm(self.level_m),
                        },
                    )
                )
                self.state = index
                self.clear_since = None
                return

    def _step_down(self, now: float, events: list[Event], measuring: bool) -> None:
        if self.state == 0 or self.level_m is None:
            return
        level = self.level_m
        if level >= self.thresholds[self.state - 1] - self.deadband_m or not measuring:
            self.clear_since = None
            return
        if self.clear_since is None:
            self.clear_since = now
        if now - self.clear_since < self.off_delay_s:
            return
        new_state = 0
        for index in range(self.state - 1, 0, -1):
            if level >= self.thresholds[index - 1] - self.deadband_m:
                new_state = index
                break
        events.append(
            Event(
                now,
                "level",
                {
                    "state": self.names[new_state],
                    "previous": self.names[self.state],
                    "level_m": _mm(level),
                },
            )
        )
        self.state = new_state
        self.clear_since = None

    def _rate_transitions(self, now: float, events: list[Event], measuring: bool) -> None:
        if not self.rate_active:
            if self.rate_since is not None and now - self.rate_since >= self.on_delay_s:
                self.rate_active = True
                self.rate_since = None
                events.append(self._rate_event(now))
            return
        if not measuring:
            self.rate_clear_since = None
            return
        if self.rate_clear_since is not None and now - self.rate_clear_since >= self.off_delay_s:
            self.rate_active = False
            self.rate_clear_since = None
            events.append(self._rate_event(now))

    def _rate_event(self, now: float) -> Event:
        rate = self.rate_m_per_h
        return Event(
            now,
            "rate",
            {
                "active": self.rate_active,
                "rise_m_per_h": None if rate is None else round(rate, 3),
                "level_m": _mm(self.level_m),
            },
        )
