"""The daemon with each hardware sensor kind configured, against its test peer."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import daemon_status, running_daemon, wait_for
from tests.serial_peers import ModbusPeer, Pty, PtyLink
from tests.test_sensor_serial import FreeRunningSensor


def write_config(tmp_path: Path, kind: str, driver_table: str, extra: str = "") -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[sensor]
kind = "{kind}"
interval_s = 0.5
alarm_interval_s = 0.25
burst = 3
max_range_m = 5.0
{driver_table}
{extra}
[storage]
state_dir = "{tmp_path / "state"}"
runtime_dir = "{tmp_path / "run"}"
""",
        encoding="utf-8",
    )
    return config


def run_until_level(tmp_path: Path, config: Path) -> tuple[dict, str]:
    with running_daemon(config) as process:
        wait_for(lambda: daemon_status(tmp_path).get("level_m") is not None, 20, "a level")
        record = daemon_status(tmp_path)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    return record, stderr


@pytest.mark.slow
def test_daemon_with_a_serial_ultrasonic_ranger(tmp_path):
    pty = Pty()
    talker = FreeRunningSensor(pty, lambda: b"R3500\r")
    try:
        config = write_config(
            tmp_path,
            "serial-ultrasonic",
            f'[sensor.serial]\nport = "{pty.path}"',
            "[calibration]\nsensor_elevation_m = 10.40",
        )
        record, stderr = run_until_level(tmp_path, config)
    finally:
        talker.stop()
        pty.close()
    assert record["level_m"] == 6.9 and record["state"] == "normal"
    assert record["sensor"]["kind"] == "serial-ultrasonic"
    assert record["sensor"]["values"] >= 3 and record["sensor"]["failures"] == {}
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_daemon_with_a_modbus_pressure_transmitter(tmp_path):
    link = PtyLink()
    peer = ModbusPeer(link.b.path, {0: 3400}, slave_id=1).start()  # 3.400 m of water
    try:
        config = write_config(
            tmp_path,
            "modbus-pressure",
            f'[sensor.modbus]\nport = "{link.a.path}"\nscale = 0.001',
            "[calibration]\noffset_m = 4.50",
        )
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
    from agent.commands.common import default_config_path
    from agent.config import load_config
    from agent.pipeline import Pipeline
    from agent.sensors import open_sensor

    config = load_config(default_config_path())
    sensor = open_sensor(config)
    try:
        reads = sensor.read_burst(config.sensor.burst)
    finally:
        sensor.close()
    measurement = Pipeline(config, sensor.value_kind, sensor.unit_to_m).process_burst(0.0, reads)
    assert measurement.valid, (reads, measurement.reason)


@pytest.mark.slow
def test_a_reflection_after_a_silence_does_not_blind_the_daemon_to_the_flood_after_it(tmp_path):
    """Issue #7's first recording, live: a serial ranger on a pty reads steady water, goes
    silent, sends a reflection (3 m too low), then the water rises through every level.
    The old gate took the reflection as its anchor and refused the whole flood (this test
    fails on it, checked); the new one goes back to the water. Time runs 300
    times faster than at the dam (0.2 s samples, the rate limit scaled to match)."""
    pty = Pty()
    script = {"start": None}

    def ranger() -> bytes:
        start = script["start"]
        t = 0.0 if start is None else time.monotonic() - start
        if t < 3.0:
            level = 7.00
        elif t < 8.0:
            return b"R9999\r"  # no echo for 5 s (the ranger's code)
        elif t < 8.5:
            return b"R6400\r"  # a reflection for a sample or two: 4.00 m
        else:
            level = min(9.0, 7.00 + 0.1 * (t - 8.5))  # then up 0.1 m/s through every level
        return f"R{round((10.40 - level) * 1000):04d}\r".encode()

    talker = FreeRunningSensor(pty, ranger)
    try:
        config = write_config(
            tmp_path,
            "serial-ultrasonic",
            f'invalid_values = [9999]\n[sensor.serial]\nport = "{pty.path}"\ntimeout_s = 0.1',
            "[calibration]\nsensor_elevation_m = 10.40\n"
            "[filter]\nmax_rate_m_per_min = 45.0\nwindow = 3\n"
            "[alarm]\nstale_after_s = 1.0\n[alarm.rate]\nenabled = false",
        )
        config.write_text(
            config.read_text()
            .replace("interval_s = 0.5", "interval_s = 0.2")
            .replace("max_range_m = 5.0", "max_range_m = 8.0")
            .replace("alarm_interval_s = 0.25", "alarm_interval_s = 0.2")
            .replace("burst = 3", "burst = 1")
        )
        with running_daemon(config) as process:
            wait_for(lambda: daemon_status(tmp_path).get("level_m") == 7.0, 20, "7.00 m")
            script["start"] = time.monotonic()
            awas = wait_for(
                lambda: (lambda s: s if s.get("warning") == "awas" else None)(
                    daemon_status(tmp_path)
                ),
                40,
                "awas",
            )
            rose_for = time.monotonic() - script["start"] - 8.5
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=10)
    finally:
        talker.stop()
        pty.close()
    # 7.00 -> 8.50 m at 0.1 m/s is 15 s, then the median of 3 lags a sample. (The old gate
    # never got there: it refused the water until it stopped rising at 9.00 m, and after.)
    assert 15.0 <= rose_for < 25.0 and awas["level_m"] >= 8.5
    levels = [line.split("level ", 1)[1] for line in stderr.splitlines() if " level " in line]
    assert [text.split()[0] for text in levels] == ["WASPADA", "SIAGA", "AWAS"], levels
