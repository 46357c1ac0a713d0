"""The simulated sensor's scenarios through the daemon's sampling step, on a fake clock:
every real rise warns, sensor noise never sounds the siren, each failure raises its fault."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from agent.daemon import Daemon
from agent.sensors.simulated import SimulatedSensor
from tests.conftest import FakeClock, config_from


@dataclass
class ScenarioRun:
    levels: list[str] = field(default_factory=list)  # each change of the threshold state
    faults: set[str] = field(default_factory=set)  # every fault seen at any time
    first_level_s: float | None = None  # scenario time of the first level change
    first_rate_alarm_s: float | None = None
    daemon: Daemon | None = None


def run_scenario(scenario: str, seed: int = 1, **sensor) -> ScenarioRun:
    """The whole scenario at the dam's own sampling periods (10 s, 2 s in alarm)."""
    config = config_from(
        {"sensor": {"simulated": {"scenario": scenario, "seed": seed, "repeat": False, **sensor}}}
    )
    clock = FakeClock(1000.0)
    start = clock.now
    sensor_driver = SimulatedSensor(config, clock=clock)
    daemon = Daemon(config, sensor_driver, lambda frame: None, clock=clock)
    run = ScenarioRun(daemon=daemon)
    while clock.now < start + sensor_driver.scenario.duration_s:
        before = daemon.engine.state_name
        daemon.sample_once()
        engine = daemon.engine
        run.faults.update(engine.active_faults)
        if engine.state_name != before:
            run.levels.append(engine.state_name)
            if run.first_level_s is None:
                run.first_level_s = clock.now - start
        if engine.rate_active and run.first_rate_alarm_s is None:
            run.first_rate_alarm_s = clock.now - start
        clock.now += daemon.interval()
    return run


def test_flash_flood_rises_through_every_level_and_recedes():
    run = run_scenario("flash-flood")
    # It recedes within awas's off-delay to below waspada: straight back to normal.
    assert run.levels == ["waspada", "siaga", "awas", "normal"]
    assert run.faults == set()
    # The rate alarm needs half its 30-minute window of history after start-up, so in this
    # flood (rising from 300 s after start) the level gets there first; it still fires.
    assert run.first_level_s < run.first_rate_alarm_s < 1500


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_spikes_and_no_echo_at_a_bad_site_never_sound_the_siren(seed):
    run = run_scenario("noisy", seed=seed, spike_probability=0.02)
    assert run.levels == [] and run.first_rate_alarm_s is None
    assert run.faults == set()  # a quarter of reads lost in bursts of five still leaves a median


def test_an_object_in_the_beam_for_an_hour_is_implausible_not_awas():
    run = run_scenario("object-in-beam")
    assert run.levels == [] and run.first_rate_alarm_s is None
    assert run.faults == {"implausible"}
    assert run.daemon.engine.active_faults == []  # cleared when the object went


def test_an_outage_raises_sensor_and_stale_and_clears():
    run = run_scenario("outage")
    assert run.levels == [] and run.faults == {"sensor", "stale"}
    assert run.daemon.engine.active_faults == []


@pytest.mark.slow
def test_slow_rise_of_six_centimetres_an_hour_raises_the_rate_alarm_hours_before_waspada():
    run = run_scenario("slow-rise")
    assert run.levels == ["waspada", "siaga", "waspada", "normal"] and run.faults == set()
    # 6.90 m to 7.50 m takes hours at 6-7 cm/h; the rate alarm (5 cm/h) warns hours earlier.
    assert run.first_level_s - run.first_rate_alarm_s > 3 * 3600
