"""HC-SR04 through the real adafruit_hcsr04 library, with the Pi's pins simulated."""

from __future__ import annotations

import sys

import pytest

from agent.config import TemperatureConfig
from agent.daemon import Daemon
from agent.errors import InstallationError
from agent.sensors import open_sensor
from agent.sensors.hcsr04 import HcSr04Sensor
from agent.sensors.temperature import TemperatureSource, compensation_factor, speed_of_sound_m_s
from tests.conftest import config_from
from tests.fake_blinka import Transducer, VirtualTime, make_modules

CONFIG = config_from(
    {
        "sensor": {
            "kind": "hcsr04",
            "burst": 5,
            "hcsr04": {"trigger_pin": 5, "echo_pin": 6},
            "temperature": {"fixed_c": 30.0},
        },
        "filter": {"acquire_samples": 1},
    }
)


@pytest.fixture
def pins(monkeypatch):
    """The real library imported against simulated pins and virtual time."""
    clock = VirtualTime()
    transducer = Transducer(clock, trigger_pin=5, echo_pin=6)
    for name, module in make_modules(transducer).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "pulseio", None)  # no PulseIn: the library bit-bangs
    monkeypatch.delitem(sys.modules, "adafruit_hcsr04", raising=False)
    import adafruit_hcsr04

    monkeypatch.setattr(adafruit_hcsr04, "time", clock)
    return transducer


def sensor(pins, temperature_c: float = 30.0) -> HcSr04Sensor:
    source = TemperatureSource(TemperatureConfig(fixed_c=temperature_c))
    return HcSr04Sensor(CONFIG, source, sleep=pins.clock.sleep, monotonic=pins.clock.monotonic)


def test_speed_of_sound_in_samarinda_is_not_340():
    assert speed_of_sound_m_s(25.0) == pytest.approx(346.1, abs=0.1)
    assert speed_of_sound_m_s(35.0) == pytest.approx(351.9, abs=0.1)
    # Over a 3 m air gap at 30 C the uncorrected reading is about 8 cm short.
    assert 300 - 300 / compensation_factor(30.0) == pytest.approx(7.7, abs=0.1)


def test_distance_is_corrected_for_the_air_temperature(pins):
    pins.distance_m, pins.temperature_c = 3.0, 30.0
    reads = sensor(pins, temperature_c=30.0).read_burst(5)
    assert [reason for _, reason in reads] == [None] * 5
    for centimetres, _ in reads:
        assert centimetres == pytest.approx(300.0, abs=0.1)  # the library alone says 292.3


def test_a_wrong_temperature_is_a_wrong_distance(pins):
    """The compensation is doing the work: assume 340 m/s (about 15 C) at 30 C and miss."""
    pins.distance_m, pins.temperature_c = 3.0, 30.0
    centimetres, _ = sensor(pins, temperature_c=15.0).read_burst(1)[0]
    assert centimetres == pytest.approx(
        300.0 * speed_of_sound_m_s(15.0) / speed_of_sound_m_s(30.0), abs=0.1
    )


def test_no_echo_is_no_reading_never_a_distance(pins):
    pins.echoes = False
    assert sensor(pins).read_burst(3) == [(None, "no_echo")] * 3


def test_reads_in_a_burst_are_at_least_60_ms_apart(pins):
    sensor(pins).read_burst(5)
    gaps = [b - a for a, b in zip(pins.trigger_times, pins.trigger_times[1:])]
    assert len(gaps) == 4 and min(gaps) >= 0.06


def test_burst_median_becomes_the_level_below_the_sensor(pins):
    from agent.pipeline import Pipeline

    driver = sensor(pins)
    pins.distance_m = 2.9
    measurement = Pipeline(CONFIG, driver.value_kind, driver.unit_to_m).process_burst(
        0.0, driver.read_burst(5)
    )
    assert measurement.level_m == pytest.approx(10.40 - 2.9, abs=0.002)


def test_ds18b20_probe_is_used_and_a_failing_one_falls_back_to_the_fixed_value(tmp_path):
    device = tmp_path / "28-00000abcdef"
    device.mkdir()
    (device / "temperature").write_text("27125\n")
    source = TemperatureSource(
        TemperatureConfig(source="ds18b20", fixed_c=30.0), w1_devices=str(tmp_path)
    )
    assert source.read() == 27.125 and source.health()["temperature_source"] == "ds18b20"
    (device / "temperature").write_text("85000\n")  # power-on value: not a reading
    assert source.read() == 30.0
    (device / "temperature").unlink()
    (device / "w1_slave").write_text(
        "72 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
    )
    assert source.read() == 30.0  # failed CRC: fall back
    (device / "w1_slave").write_text(
        "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
    )
    assert source.read() == 23.125
    health = source.health()
    assert (health["temperature_fallbacks"], health["temperature_error"]) == (2, None)


def test_missing_probe_falls_back_and_says_why(tmp_path):
    source = TemperatureSource(
        TemperatureConfig(source="ds18b20", fixed_c=29.0), w1_devices=str(tmp_path)
    )
    assert source.read() == 29.0
    assert "no DS18B20" in source.health()["temperature_error"]


def test_off_the_pi_without_blinka_fakes_the_driver_says_what_it_needs(monkeypatch):
    monkeypatch.setitem(sys.modules, "board", None)
    with pytest.raises(InstallationError) as caught:
        HcSr04Sensor(CONFIG, TemperatureSource(TemperatureConfig()))
    assert "Raspberry Pi" in str(caught.value)


def test_without_the_hcsr04_extra_the_error_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "adafruit_hcsr04", None)
    with pytest.raises(InstallationError) as caught:
        open_sensor(CONFIG)
    assert "pip install 'gauge-agent[hcsr04]'" in str(caught.value)


def test_daemon_samples_the_hcsr04_kind(pins):
    driver = open_sensor(CONFIG)
    driver.driver.sleep = pins.clock.sleep  # keep the burst spacing in virtual time
    driver.driver.monotonic = pins.clock.monotonic
    daemon = Daemon(CONFIG, driver, lambda frame: None)
    try:
        pins.distance_m = 2.5
        daemon.sample_once()
    finally:
        driver.close()
    assert daemon.engine.level_m == pytest.approx(7.90, abs=0.002)
    assert daemon.engine.state_name == "siaga"
    assert daemon.status_record()["sensor"]["temperature_c"] == 30.0


@pytest.mark.hardware
def test_a_real_hcsr04_reads_a_distance_in_range():
    driver = open_sensor(CONFIG)
    try:
        reads = driver.read_burst(5)
    finally:
        driver.close()
    values = [value for value, _ in reads if value is not None]
    assert values and all(2.0 <= value <= 450.0 for value in values)
