"""What the siren and the lamps do at each moment, from the warning state alone.

Pure and time-driven: `render(now)` gives the on/off state of every output and `next_change(now)`
the moment it can next differ, so the output thread sleeps between edges (an idle gauge wakes
twice per heartbeat, not twenty times a second) and tests check exact pin histories without
sleeping.

- Each warning level has a lamp (`amber`, `red`, `red-blink`) and a siren pattern (`off` or a
  named on/off cycle; `off_s = 0` is continuous). A pattern starts with the siren on.
- Any active fault blinks the amber lamp (over a steady amber): the gauge needs a technician.
- The green lamp is a heartbeat: a short flash every `heartbeat_s` while the agent runs.
- Duty limit: after `siren_max_on_s` of continuous sound the siren rests `siren_rest_s`
  (sirens and their amplifiers overheat), then resumes its pattern.
- The silence button mutes the siren for `silence_s`; a higher warning sounds it again at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from agent.config import Config

BLINK_PERIOD_S = 1.0  # red-blink and the fault blink: 0.5 s on, 0.5 s off
HEARTBEAT_FLASH_S = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """The state of every output at one moment. Built once per render (not per sample), so
    frozen costs nothing that matters here."""

    siren: bool
    green: bool
    amber: bool
    red: bool

    def as_tuple(self) -> tuple[bool, bool, bool, bool]:
        return (self.siren, self.green, self.amber, self.red)


def _blink_on(now: float, since: float, period: float) -> bool:
    return (now - since) % period < period / 2


def _next_edge(now: float, since: float, on_s: float, period: float) -> float:
    """The next moment after `now` at which a cycle that is on for `on_s` of every `period`,
    starting at `since`, switches."""
    phase = (now - since) % period
    return now + (on_s - phase if phase < on_s else period - phase)


class Annunciator:
    """Thread-safe: the sampling thread sets the alarm, the button thread silences, the output
    thread renders."""

    def __init__(self, config: Config, start: float):
        self.config = config
        outputs = config.outputs
        self.silence_s = outputs.silence_s
        self.max_on_s = outputs.siren_max_on_s
        self.rest_s = outputs.siren_rest_s
        self.heartbeat_s = outputs.heartbeat_s
        self.start = start
        self._lock = threading.Lock()
        self.warning = 0
        self.faults: tuple[str, ...] = ()
        self.pattern_name = "off"
        self.pattern_since = start
        self.silenced_until: float | None = None
        self.silenced_warning = 0
        self._siren_on_since: float | None = None  # for the duty limit
        self._rest_until: float | None = None
        # Set when the alarm, the faults or a silence change: the output thread, asleep until
        # the next blink or pattern edge, renders at once.
        self.changed = threading.Event()

    def set_alarm(self, now: float, warning: int, faults: list[str] | tuple[str, ...]) -> None:
        with self._lock:
            before = (self.warning, self.faults, self.pattern_name, self.silenced_until)
            if warning > self.silenced_warning:
                self.silenced_until = None  # escalation re-sounds a silenced siren
            pattern = self.config.siren_pattern_for(warning)
            if pattern != self.pattern_name:
                self.pattern_name = pattern
                self.pattern_since = now
            self.warning = warning
            self.faults = tuple(faults)
            if (self.warning, self.faults, self.pattern_name, self.silenced_until) != before:
                self.changed.set()

    def take_over(self, previous: Annunciator) -> None:
        """After a configuration reload: a silence and the siren's duty cycle go on."""
        with previous._lock:
            self.silenced_until = previous.silenced_until
            self.silenced_warning = previous.silenced_warning
            self._siren_on_since = previous._siren_on_since
            self._rest_until = previous._rest_until
        self.changed.set()

    def silence(self, now: float) -> bool:
        """The silence button. Returns True if it silenced a sounding alarm."""
        with self._lock:
            if self.pattern_name == "off":
                return False
            self.silenced_until = now + self.silence_s
            self.silenced_warning = self.warning
            self.changed.set()
            return True

    def silenced(self, now: float) -> bool:
        with self._lock:
            return self.silenced_until is not None and now < self.silenced_until

    def render(self, now: float) -> Frame:
        with self._lock:
            siren = self._siren(now)
            lamp = self.config.lamp_for(self.warning)
            red = lamp == "red" or (
                lamp == "red-blink" and _blink_on(now, self.pattern_since, BLINK_PERIOD_S)
            )
            if self.faults:
                amber = _blink_on(now, self.start, BLINK_PERIOD_S)
            else:
                amber = lamp == "amber"
            green = (now - self.start) % self.heartbeat_s < HEARTBEAT_FLASH_S
            return Frame(siren=siren, green=green, amber=amber, red=red)

    def next_change(self, now: float) -> float:
        """Until this moment `render` gives the frame it gave at `now` (unless the alarm, the
        faults or a silence change, which set `changed`): the output thread sleeps until then
        instead of ticking. Call it after `render(now)`."""
        with self._lock:
            edges = [_next_edge(now, self.start, HEARTBEAT_FLASH_S, self.heartbeat_s)]
            if self.faults:
                edges.append(_next_edge(now, self.start, BLINK_PERIOD_S / 2, BLINK_PERIOD_S))
            if self.config.lamp_for(self.warning) == "red-blink":
                edges.append(
                    _next_edge(now, self.pattern_since, BLINK_PERIOD_S / 2, BLINK_PERIOD_S)
                )
            if self.pattern_name != "off":
                pattern = self.config.pattern(self.pattern_name)
                if pattern is not None and pattern.off_s > 0:
                    edges.append(
                        _next_edge(
                            now, self.pattern_since, pattern.on_s, pattern.on_s + pattern.off_s
                        )
                    )
                for moment in (self.silenced_until, self._rest_until):
                    if moment is not None and moment > now:
                        edges.append(moment)
                if self._siren_on_since is not None:
                    edges.append(self._siren_on_since + self.max_on_s)
            return min(edges)

    def _siren(self, now: float) -> bool:
        wanted = self._pattern_on(now)
        if self.silenced_until is not None:
            if now < self.silenced_until:
                wanted = False
            else:
                self.silenced_until = None
        if self._rest_until is not None:
            if now < self._rest_until:
                wanted = False
            else:
                self._rest_until = None
        if wanted:
            if self._siren_on_since is None:
                self._siren_on_since = now
            elif now - self._siren_on_since >= self.max_on_s:
                self._rest_until = now + self.rest_s
                self._siren_on_since = None
                wanted = False
        else:
            self._siren_on_since = None
        return wanted

    def _pattern_on(self, now: float) -> bool:
        if self.pattern_name == "off":
            return False
        pattern = self.config.pattern(self.pattern_name)
        if pattern is None or pattern.off_s == 0:
            return True  # continuous; an unknown name cannot pass check-config, sound anyway
        return (now - self.pattern_since) % (pattern.on_s + pattern.off_s) < pattern.on_s
