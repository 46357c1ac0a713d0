"""Failure handling shared by every driver: counters, backoff, power cycling, driver bugs."""

from __future__ import annotations

import time

import pytest

from agent.config import SensorConfig
from agent.sensors.supervisor import SupervisedSensor
from tests.conftest import FakeClock


class FailingDriver:
    value_kind, unit, unit_to_m = "distance", "m", 1.0

    def __init__(self):
        self.requests: list[int] = []
        self.answer = None  # None: fail with "timeout"; a float: that distance
        self.crash = False

    def read_burst(self, count):
        self.requests.append(count)
        if self.crash:
            raise ZeroDivisionError("bug in the driver")
        return [(self.answer, None if self.answer is not None else "timeout")] * count

    def close(self):
        pass


def supervised(**settings) -> tuple[SupervisedSensor, FailingDriver, FakeClock]:
    clock = FakeClock()
    driver = FailingDriver()
    config = SensorConfig(burst=5, fail_to_fault=3, backoff_max_s=16.0, **settings)
    return SupervisedSensor(driver, config, clock=clock, sleep=clock.sleep), driver, clock


def test_a_failing_sensor_is_backed_off_to_single_reads_at_growing_intervals():
    sensor, driver, clock = supervised()
    attempts = []
    for second in range(0, 60, 2):  # the daemon samples every 2 s in alarm
        clock.now = float(second)
        before = len(driver.requests)
        sensor.read_burst(5)
        if len(driver.requests) > before:
            attempts.append((second, driver.requests[-1]))
    # Three full bursts, then one read after 2, 4, 8, 16, 16 ... s.
    assert attempts == [(0, 5), (2, 5), (4, 5), (6, 1), (10, 1), (18, 1), (34, 1), (50, 1)]
    assert sensor.skipped_samples == 30 - len(attempts)


def test_skipped_samples_still_report_the_failure_so_the_fault_stays_up():
    sensor, _, clock = supervised()
    for second in (0, 2, 4):
        clock.now = second
        sensor.read_burst(5)
    clock.now = 5
    assert sensor.read_burst(5) == [(None, "timeout")]


def test_a_value_ends_the_backoff_at_once():
    sensor, driver, clock = supervised()
    for second in (0, 2, 4, 6):
        clock.now = second
        sensor.read_burst(5)
    driver.answer = 3.0
    clock.now = 10.0
    assert sensor.read_burst(5) == [(3.0, None)]  # one read: still failing before
    clock.now = 12.0
    assert sensor.read_burst(5) == [(3.0, None)] * 5  # healthy: full bursts again
    assert sensor.failed_samples == 0


def test_a_crashing_driver_is_no_reading():
    sensor, driver, _ = supervised()
    driver.crash = True
    assert sensor.read_burst(5) == [(None, "driver_error")]
    assert sensor.health()["failures"] == {"driver_error": 1}


def test_power_relay_cycles_the_sensor_after_n_failed_samples(mock_factory):
    from gpiozero import OutputDevice

    relay = OutputDevice(16, initial_value=True, pin_factory=mock_factory)
    clock = FakeClock()
    driver = FailingDriver()
    config = SensorConfig(
        burst=5,
        fail_to_fault=3,
        backoff_max_s=0.0,
        power_relay_pin=16,
        power_cycle_after=4,
        power_off_s=2.0,
        power_settle_s=1.5,
    )
    sensor = SupervisedSensor(driver, config, power_relay=relay, clock=clock, sleep=clock.sleep)
    try:
        for second in range(10):
            clock.now = float(second)
            sensor.read_burst(5)
            if sensor.cycle_thread is not None:
                sensor.cycle_thread.join()  # virtual time: the cycle is instant
        assert [bool(s.state) for s in mock_factory.pin(16).states] == [
            False,
            True,
            False,
            True,
            False,
            True,
        ]  # on at start; cycled after 4 and 8
        assert clock.slept == [2.0, 1.5, 2.0, 1.5]
        assert sensor.health()["power_cycles"] == 2
    finally:
        sensor.close()
    assert relay.closed


def test_health_counts_reads_by_reason():
    sensor, driver, clock = supervised()
    sensor.read_burst(5)
    driver.answer = 2.5
    clock.now = 2
    sensor.read_burst(5)
    health = sensor.health()
    assert (health["reads"], health["values"], health["failures"]) == (10, 5, {"timeout": 5})


def test_hardware_libraries_are_imported_only_for_the_configured_kind():
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from agent.config import Config\n"
        "from agent.sensors import open_sensor\n"
        "sensor = open_sensor(Config(), simulate=True)\n"
        "sensor.read_burst(3)\n"
        "print(sorted(m for m in ('adafruit_hcsr04', 'board', 'minimalmodbus', 'serial',"
        " 'pymodbus') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


@pytest.mark.slow
def test_a_power_cycle_never_holds_up_the_sampling_loop(mock_factory):
    """The cycle slept 4 s on the sampling thread, delaying every fault deadline with it."""
    from gpiozero import OutputDevice

    relay = OutputDevice(16, initial_value=True, pin_factory=mock_factory)
    config = SensorConfig(
        burst=5,
        fail_to_fault=1,
        backoff_max_s=0.0,
        power_relay_pin=16,
        power_cycle_after=1,
        power_off_s=1.0,
        power_settle_s=0.5,
    )
    sensor = SupervisedSensor(FailingDriver(), config, power_relay=relay)
    try:
        started = time.monotonic()
        sensor.read_burst(5)  # fails: the cycle starts
        during = sensor.read_burst(5)
        assert time.monotonic() - started < 0.5
        assert during == [(None, "power_cycle")] and sensor.power_cycling
        sensor.cycle_thread.join(timeout=5)
        assert sensor.health()["power_cycles"] == 1 and bool(relay.value)
    finally:
        sensor.close()
