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
- A siren test (`gauge-agent siren-test`) sounds a pattern and lights every lamp for a few
  seconds, only while no warning is up: a real warning ends it at once and takes over.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from agent.config import Config
from agent.i18n import N_

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


@dataclass(frozen=True, slots=True)
class SirenTest:
    pattern: str  # a configured siren pattern
    since: float
    until: float
    quiet: bool  # lamps only


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
        self.test: SirenTest | None = None
        # Test starts and ends (time, what), for the sampling thread to send upstream.
        self.test_log: list[tuple[float, dict]] = []
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
            if warning > 0 and self.test is not None:
                self._end_test(now, N_("a real warning took over"))
            if (self.warning, self.faults, self.pattern_name, self.silenced_until) != before:
                self.changed.set()

    def start_test(self, now: float, pattern: str, seconds: float, quiet: bool) -> str | None:
        """Start a siren test; None, or the name of the warning that is up (the siren is the
        warning's, not a test's)."""
        with self._lock:
            if self.warning > 0:
                return self.config.level_names()[self.warning - 1]
            self.test = SirenTest(pattern, now, now + seconds, quiet)
            self.test_log.append(
                (now, {"active": True, "pattern": pattern, "seconds": seconds, "quiet": quiet})
            )
            self.changed.set()
            return None

    def end_test(self, now: float, why: str) -> None:
        with self._lock:
            if self.test is not None:
                self._end_test(now, why)

    def testing(self, now: float) -> bool:
        with self._lock:
            test = self.test
            if test is not None and now >= test.until:
                self._end_test(test.until, N_("its time is up"))
            return self.test is not None

    def _end_test(self, now: float, why: str) -> None:
        self.test = None
        self.test_log.append((now, {"active": False, "why": why}))
        self.changed.set()

    def take_test_log(self) -> list[tuple[float, dict]]:
        with self._lock:
            log, self.test_log = self.test_log, []
            return log

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
            test = self.test
            if test is not None and test.since <= now < test.until:
                green = amber = red = True  # the lamp test: every lamp lights
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
            name, since = self._sounding(now)
            test = self.test
            if test is not None:
                edges += [moment for moment in (test.since, test.until) if moment > now]
            if name != "off":
                pattern = self.config.pattern(name)
                if pattern is not None and pattern.off_s > 0:
                    edges.append(_next_edge(now, since, pattern.on_s, pattern.on_s + pattern.off_s))
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

    def _sounding(self, now: float) -> tuple[str, float]:
        """The pattern the siren follows now and since when: the warning's, or a test's while
        no warning is up (a test that is not quiet)."""
        test = self.test
        if (
            self.pattern_name == "off"
            and test is not None
            and not test.quiet
            and test.since <= now < test.until
        ):
            return test.pattern, test.since
        return self.pattern_name, self.pattern_since

    def _pattern_on(self, now: float) -> bool:
        name, since = self._sounding(now)
        if name == "off":
            return False
        pattern = self.config.pattern(name)
        if pattern is None or pattern.off_s == 0:
            return True  # continuous; an unknown name cannot pass check-config, sound anyway
        return (now - since) % (pattern.on_s + pattern.off_s) < pattern.on_s
