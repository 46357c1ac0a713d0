"""A simulated distance sensor at the dam: scripted water levels with realistic sensor faults.

The scenarios are in scenario seconds; `sensor.simulated.time_scale` compresses them (60 turns
an 80-minute flash flood into 80 real seconds for the demo). The noise is what real ultrasonic
gauges show: a few millimetres of jitter, spikes about 1 in 100 reads, no-echo codes (up to a
quarter of reads at a bad site), outages, and objects in the beam at the minimum range.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from agent.config import Config
from agent.reasons import Reason
from agent.sensors import RawRead

KIND = "simulated"
EXTRA = None


def open_driver(config: Config, clock: Callable[[], float]) -> SimulatedSensor:
    """The scenarios' clock is the daemon's: a test's fake clock moves the water too."""
    return SimulatedSensor(config, clock=clock)


BASE_LEVEL_M = 6.90  # a normal reservoir level below the main spillway crest (7.20 m)


def _ramp(t: float, start: float, duration: float, low: float, high: float) -> float:
    """Smooth (cosine) change from `low` to `high` over [start, start + duration]."""
    if t <= start:
        return low
    if t >= start + duration:
        return high
    fraction = (1 - math.cos(math.pi * (t - start) / duration)) / 2
    return low + (high - low) * fraction


class Scenario:
    """Water level over time plus the faults the sensor suffers."""

    duration_s = 3600.0

    def level(self, t: float) -> float:
        return BASE_LEVEL_M + 0.01 * math.sin(2 * math.pi * t / 3600)

    def object_in_beam(self, t: float) -> bool:
        return False

    def outage(self, t: float) -> bool:
        return False

    no_echo_probability: float | None = None  # None: the configured one


class FlashFlood(Scenario):
    """Rises through Waspada, Siaga and Awas to 8.80 m in 25 minutes, holds, recedes."""

    duration_s = 4800.0

    def level(self, t: float) -> float:
        if t < 2400:
            return _ramp(t, 300, 1500, BASE_LEVEL_M, 8.80)
        return _ramp(t, 2400, 1500, 8.80, BASE_LEVEL_M)


class SlowRise(Scenario):
    """The reservoir creeps up 6-7 cm/h for 16 hours (above the usual 2 cm/h), then falls."""

    duration_s = 30 * 3600.0

    def level(self, t: float) -> float:
        if t < 17 * 3600:
            return _ramp(t, 3600, 16 * 3600, BASE_LEVEL_M, 7.95)
        return _ramp(t, 17 * 3600, 12 * 3600, 7.95, BASE_LEVEL_M)


class Noisy(Scenario):
    """A bad site: a quarter of reads get no echo."""

    no_echo_probability = 0.25


class ObjectInBeam(Scenario):
    """Something (a bird, a floating log caught on the bracket) blocks the beam for an hour."""

    duration_s = 7200.0

    def object_in_beam(self, t: float) -> bool:
        return 600 <= t < 4200


class Outage(Scenario):
    """The sensor stops answering for 15 minutes."""

    duration_s = 3600.0

    def outage(self, t: float) -> bool:
        return 600 <= t < 1500


SCENARIOS: dict[str, type[Scenario]] = {
    "calm": Scenario,
    "flash-flood": FlashFlood,
    "slow-rise": SlowRise,
    "noisy": Noisy,
    "object-in-beam": ObjectInBeam,
    "outage": Outage,
}


class SimulatedSensor:
    value_kind = "distance"
    unit = "m"
    unit_to_m = 1.0

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic):
        settings = config.sensor.simulated
        self.settings = settings
        self.scenario = SCENARIOS[settings.scenario]()
        mount = settings.mount_elevation_m
        self.elevation_m = mount if mount != -1 else config.calibration.sensor_elevation_m
        self.min_range_m = config.sensor.min_range_m
        self.max_range_m = config.sensor.max_range_m
        self.random = random.Random(settings.seed)
        self.clock = clock
        self.started = clock()
        self.reads = 0

    def scenario_time(self) -> float:
        t = (self.clock() - self.started) * self.settings.time_scale
        if self.settings.repeat:
            return t % self.scenario.duration_s
        return t

    def true_level(self) -> float:
        return self.scenario.level(self.scenario_time())

    def read_burst(self, count: int) -> list[RawRead]:
        return [self.read_once() for _ in range(count)]

    def read_once(self) -> RawRead:
        self.reads += 1
        t = self.scenario_time()
        scenario, rnd, settings = self.scenario, self.random, self.settings
        if scenario.outage(t):
            return None, Reason.TIMEOUT
        if scenario.object_in_beam(t):
            return self.min_range_m + 0.02 + rnd.gauss(0, 0.002), None
        no_echo = scenario.no_echo_probability
        if rnd.random() < (settings.no_echo_probability if no_echo is None else no_echo):
            return None, Reason.NO_ECHO
        if rnd.random() < settings.spike_probability:
            return rnd.uniform(self.min_range_m, self.max_range_m), None
        distance = self.elevation_m - scenario.level(t) + rnd.gauss(0, settings.noise_m)
        return round(distance, 4), None

    def close(self) -> None:
        pass
