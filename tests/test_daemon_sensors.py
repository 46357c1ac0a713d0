"""The daemon with each hardware sensor kind configured, against its test peer."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import daemon_status, running_daemon, wait_for
from tests.serial_peers import ModbusPeer, Pty, PtyLink

from tests.test_sensor_serial import FreeRunningSensor


def write_config(tmp_path: Path, kind: str, driver_table: str, extra: str = "") -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f"""
[sensor]
kind = "{kind}"
interval_s = 0.5
alarm_interval_s = 0.25
burst = 3
max_range_m = 5.0
{driver_table}
{extra}
[storage]
state_dir = "{tmp_path / 'state'}"
runtime_dir = "{tmp_path / 'run'}"
""", encoding="utf-8")
    return config


def run_until_level(tmp_path: Path, config: Path) -> tuple[dict, str]:
    with running_daemon(config) as process:
        wait_for(lambda: daemon_status(tmp_path).get("level_m") is not None, 20, "a level")
        record = daemon_status(tmp_path)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    return record, stderr


def test_daemon_with_a_serial_ultrasonic_ranger(tmp_path):
    pty = Pty()
    talker = FreeRunningSensor(pty, lambda: b"R3500\r")
    try:
        config = write_config(tmp_path, "serial-ultrasonic",
                              f'[sensor.serial]\nport = "{pty.path}"',
                              "[calibration]\nsensor_elevation_m = 10.40")
        record, stderr = run_until_level(tmp_path, config)
    finally:
        talker.stop()
        pty.close()
    assert record["level_m"] == 6.9 and record["state"] == "normal"
    assert record["sensor"]["kind"] == "serial-ultrasonic"
    assert record["sensor"]["values"] >= 3 and record["sensor"]["failures"] == {}
    assert "Traceback" not in stderr


def test_daemon_with_a_modbus_pressure_transmitter(tmp_path):
    link = PtyLink()
    peer = ModbusPeer(link.b.path, {0: 3400}, slave_id=1).start()   # 3.400 m of water
    try:
        config = write_config(tmp_path, "modbus-pressure",
                              f'[sensor.modbus]\nport = "{link.a.path}"\nscale = 0.001',
                              "[calibration]\noffset_m = 4.50")
        record, stderr = run_until_level(tmp_path, config)
    finally:
        peer.stop()
        link.close()
    assert record["level_m"] == 7.9 and record["state"] == "siaga"
    assert record["sensor"]["kind"] == "modbus-pressure" and record["sensor"]["values"] >= 3
    assert "level SIAGA (was normal) at 7.900 m" in stderr


@pytest.mark.hardware
def test_the_sensor_configured_on_this_pi_answers_with_a_level_in_range():
    """Field acceptance on the Pi: the deployed configuration's sensor gives a valid level."""
    from agent.config import load_config
    from agent.pipeline import Pipeline
    from agent.sensors import open_sensor
    from agent.cli import default_config_path

    config = load_config(default_config_path())
    sensor = open_sensor(config)
    try:
        reads = sensor.read_burst(config.sensor.burst)
    finally:
        sensor.close()
    measurement = Pipeline(config, sensor.value_kind, sensor.unit_to_m).process_burst(0.0, reads)
    assert measurement.valid, (reads, measurement.reason)
