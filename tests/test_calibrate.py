"""Calibration against the staff gauge: the arithmetic and its refusals, the files (atomic,
previous version, history, a kill at any moment), and the real command line against the
simulated sensor, with and without a running daemon."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib

import pytest

from agent.calibration import (
    CalibrationFiles,
    CalibrationRefused,
    Readings,
    level_of,
    offset_from_staff_gauge,
)
from agent.config import CalibrationConfig
from tests.conftest import ROOT, calm_config, daemon_status, run_cli, running_daemon, wait_for

NEAR_10_40 = r"10\.(39[7-9]\d*|40[0-3]?\d*)\b"  # the mount height, as noisy readings find it
TEMPLATE = CalibrationConfig(sensor_elevation_m=10.40, offset_m=0.0, scale=1.0)


def readings(kind: str, mean_m: float) -> Readings:
    return Readings(kind, 10, mean_m, 0.002, mean_m - 0.004, mean_m + 0.004)


def test_a_ranger_is_calibrated_by_the_elevation_of_its_face():
    used = readings("distance", 3.5005)
    new = offset_from_staff_gauge(TEMPLATE, used, 7.000)
    assert new == CalibrationConfig(sensor_elevation_m=10.5005, offset_m=0.0, scale=1.0)
    assert level_of(new, used) == pytest.approx(7.000)


def test_a_transmitter_is_calibrated_by_its_offset_and_keeps_its_scale():
    current = CalibrationConfig(sensor_elevation_m=10.40, offset_m=2.0, scale=1.02)
    used = readings("depth", 4.9)
    new = offset_from_staff_gauge(current, used, 7.300)
    assert new.offset_m == pytest.approx(7.300 - 1.02 * 4.9, abs=1e-4) and new.scale == 1.02
    assert level_of(new, used) == pytest.approx(7.300, abs=1e-4)


@pytest.mark.parametrize(
    ("kind", "mean_m", "staff_m", "why"),
    [
        ("depth", 0.01, 7.0, "not submerged"),
        ("distance", 0.0, 7.0, "below the water it measures"),
        ("distance", 3.5, 8999.0, "outside -500 .. 9000 m"),
    ],
)
def test_a_calibration_that_cannot_be_right_is_refused_with_the_reason(kind, mean_m, staff_m, why):
    with pytest.raises(CalibrationRefused, match=why):
        offset_from_staff_gauge(TEMPLATE, readings(kind, mean_m), staff_m)


def test_writing_keeps_the_previous_version_and_appends_the_history(tmp_path, monkeypatch):
    monkeypatch.setenv("SUDO_USER", "budi")
    files = CalibrationFiles(tmp_path / "config.toml")
    first = CalibrationConfig(sensor_elevation_m=10.5, offset_m=0.0, scale=1.0)
    second = CalibrationConfig(sensor_elevation_m=10.45, offset_m=0.0, scale=1.0)
    files.write(TEMPLATE, first, "offset", {"staff_gauge_m": 7.0}, 1.8e9)
    files.write(first, second, "offset", {"staff_gauge_m": 7.05}, 1.8e9 + 86400)
    current = tomllib.loads(files.path.read_text())["calibration"]
    previous = tomllib.loads(files.previous.read_text())["calibration"]
    assert current["sensor_elevation_m"] == 10.45 and previous["sensor_elevation_m"] == 10.5
    with open(files.history_path, "a") as history:
        history.write("{half a line the card lost\n")
    entries = files.history()
    assert [entry.get("user") for entry in entries[:2]] == ["budi", "budi"]
    assert entries[0]["old"]["sensor_elevation_m"] == 10.4 and entries[1]["time"].endswith("Z")
    assert entries[2] == {"damaged_line": 3}


KILLER = """
import sys, time
from agent.calibration import CalibrationFiles
from agent.config import CalibrationConfig
files = CalibrationFiles(sys.argv[1])
old = CalibrationConfig()
i = 0
while True:
    i += 1
    new = CalibrationConfig(sensor_elevation_m=10 + i / 1000, offset_m=0.0, scale=1.0)
    files.write(old, new, "offset", {"pad": "x" * 20000}, time.time())
    old = new
"""


@pytest.mark.slow
def test_a_kill_at_any_moment_of_writing_leaves_a_valid_calibration(tmp_path):
    config_path = tmp_path / "config.toml"
    calibration = tmp_path / "calibration.toml"
    for trial in range(20):
        writer = subprocess.Popen(
            [sys.executable, "-c", KILLER, str(config_path)], cwd=ROOT, stderr=subprocess.PIPE
        )
        wait_for(calibration.exists, 10, "the first write")
        time.sleep(0.01 + (trial % 7) * 0.013)  # a different moment in the write each time
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=10)  # reaps it and closes its pipe
        values = tomllib.loads(calibration.read_text())["calibration"]
        assert 10.0 < values["sensor_elevation_m"] < 20.0
        leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
        for name in leftovers:  # a killed writer's temporary file is harmless, never read
            (tmp_path / name).unlink()


def world_config(tmp_path, noise_m: float = 0.002) -> str:
    """The simulated sensor hangs at 10.40 m over water at 6.90 m; the gauge is calibrated as
    if it hung at 10.30 m: it shows 6.80 m."""
    return calm_config(tmp_path, noise_m, calibrated_elevation_m=10.30)


def wait_for_level(tmp_path, level_m: float) -> None:
    """Until the running daemon's status shows `level_m` (within 1 cm)."""
    wait_for(
        lambda: daemon_status(tmp_path).get("level_m") == pytest.approx(level_m, abs=0.01),
        20,
        f"the daemon to show {level_m:.2f} m",
    )


def calibrated_elevation(tmp_path) -> float:
    return tomllib.loads((tmp_path / "calibration.toml").read_text())["calibration"][
        "sensor_elevation_m"
    ]


@pytest.mark.slow
def test_calibrate_show_history_undo_through_the_command_line(tmp_path):
    config = world_config(tmp_path)
    declined = run_cli(
        "calibrate", "--config", config, "offset", "--staff-gauge", "6.90", input="n\n"
    )
    assert declined.returncode == 1 and "nothing written" in declined.stdout
    assert not (tmp_path / "calibration.toml").exists()

    done = run_cli("calibrate", "--config", config, "offset", "--staff-gauge", "6.90", input="y\n")
    assert done.returncode == 0, done.stderr
    assert "the gauge shows 6.80" in done.stdout
    assert re.search(rf"sensor_elevation_m: 10.3 -> {NEAR_10_40}", done.stdout)
    assert "no daemon running" in done.stdout
    assert calibrated_elevation(tmp_path) == pytest.approx(10.40, abs=0.003)

    shown = run_cli("calibrate", "--config", config, "show")
    assert re.search(rf"sensor_elevation_m = {NEAR_10_40}", shown.stdout)
    assert "(offset)" in shown.stdout
    history = run_cli("calibrate", "--config", config, "history")
    assert re.search(rf"offset  sensor_elevation_m 10.3 -> {NEAR_10_40}", history.stdout)
    assert "staff gauge 6.9 m, 10 readings" in history.stdout

    undone = run_cli("calibrate", "--config", config, "undo", "--yes")
    assert undone.returncode == 0, undone.stderr
    assert calibrated_elevation(tmp_path) == 10.30
    read = run_cli("read", "--config", config, "--count", "12")
    assert read.stdout.splitlines()[-1].startswith("level 6.80")


@pytest.mark.slow
def test_readings_that_do_not_settle_are_refused_and_nothing_is_written(tmp_path):
    config = world_config(tmp_path, noise_m=0.05)
    refused = run_cli("calibrate", "--config", config, "offset", "--staff-gauge", "6.90", "--yes")
    assert refused.returncode == 1
    assert "did not settle" in refused.stderr and "nothing written" in refused.stderr
    assert not (tmp_path / "calibration.toml").exists()


@pytest.mark.slow
def test_the_running_daemon_takes_the_calibration_without_a_restart_and_tells_upstream(tmp_path):
    config = world_config(tmp_path)
    with running_daemon(tmp_path / "config.toml") as process:
        wait_for_level(tmp_path, 6.80)
        pid = daemon_status(tmp_path)["pid"]
        done = run_cli("calibrate", "--config", config, "offset", "--staff-gauge", "6.90", "--yes")
        assert done.returncode == 0, done.stderr
        assert "the running daemon is applying it now" in done.stdout
        wait_for_level(tmp_path, 6.90)
        assert daemon_status(tmp_path)["pid"] == pid  # no restart
        shown = run_cli("status", "--config", config)
        details = r"\n  last valid reading \d+ s ago  clock .*  calibrated 20\d\d-\d\d-\d\d by "
        assert re.search(details, shown.stdout), shown.stdout
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert re.search(rf"calibration changed: sensor_elevation_m 10.3 -> {NEAR_10_40}", stderr)
    with sqlite3.connect(tmp_path / "state" / "outbox.sqlite") as outbox:
        bodies = [json.loads(body) for (body,) in outbox.execute("SELECT body FROM events")]
    (event,) = [body for body in bodies if body["kind"] == "calibration"]
    assert event["previous_sensor_elevation_m"] == 10.30
    assert event["sensor_elevation_m"] == pytest.approx(10.40, abs=0.003)


@pytest.mark.slow
def test_a_commissioning_session_in_a_real_terminal(tmp_path):
    """What a technician does on a phone's SSH session: read, calibrate and answer the
    question at the prompt in a pseudo-terminal, then see the daemon's level follow."""
    import pty

    config = world_config(tmp_path)
    with running_daemon(tmp_path / "config.toml") as daemon:
        wait_for_level(tmp_path, 6.80)
        controller, terminal = pty.openpty()
        session = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "calibrate",
                "--config",
                config,
                "offset",
                "--staff-gauge",
                "6.90",
            ],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            cwd=ROOT,
            start_new_session=True,
        )
        os.close(terminal)
        screen = b""
        try:
            deadline = time.monotonic() + 30
            while b"[y/N]" not in screen and time.monotonic() < deadline:
                screen += os.read(controller, 4096)
            assert b"Write this calibration? [y/N]" in screen, screen.decode(errors="replace")
            os.write(controller, b"y\r")  # Enter on a terminal sends a carriage return
            session.wait(timeout=30)
            try:
                while chunk := os.read(controller, 4096):
                    screen += chunk
            except OSError:  # the terminal closed with the session
                pass
        finally:
            os.close(controller)
        text = screen.decode(errors="replace")
        assert session.returncode == 0, text
        assert "the running daemon is applying it now" in text
        wait_for_level(tmp_path, 6.90)
        daemon.terminate()
        daemon.communicate(timeout=10)


# -- two-point calibration of a pressure transmitter -------------------------------------------

from agent.calibration import span_from_points  # noqa: E402


def test_span_goes_through_both_points_and_refuses_what_cannot_be_right():
    new = span_from_points(
        TEMPLATE,
        {"staff_gauge_m": 6.20, "mean_m": 3.10},
        {"staff_gauge_m": 7.45, "mean_m": 4.30},
    )
    assert new.scale == pytest.approx(1.25 / 1.20, abs=1e-5)
    assert new.offset_m + new.scale * 3.10 == pytest.approx(6.20, abs=1e-4)
    assert new.offset_m + new.scale * 4.30 == pytest.approx(7.45, abs=1e-4)
    with pytest.raises(CalibrationRefused, match="5 cm apart in depth"):
        span_from_points(
            TEMPLATE,
            {"staff_gauge_m": 6.2, "mean_m": 3.10},
            {"staff_gauge_m": 6.25, "mean_m": 3.15},
        )
    with pytest.raises(CalibrationRefused, match="span would be 2.000, far from 1"):
        span_from_points(
            TEMPLATE, {"staff_gauge_m": 6.0, "mean_m": 3.0}, {"staff_gauge_m": 7.0, "mean_m": 3.5}
        )


def test_a_span_uses_the_points_taken_since_the_calibration_last_changed(tmp_path):
    files = CalibrationFiles(tmp_path / "config.toml")
    files.record_point({"staff_gauge_m": 5.0, "readings": {"mean_m": 2.0}}, 1.8e9)
    files.write(TEMPLATE, TEMPLATE, "offset", {}, 1.8e9 + 10)
    files.record_point({"staff_gauge_m": 6.0, "readings": {"mean_m": 3.0}}, 1.8e9 + 20)
    assert [p["staff_gauge_m"] for p in files.points_since_last_change()] == [6.0]


@pytest.mark.slow
def test_point_point_span_with_a_modbus_transmitter_through_the_command_line(tmp_path):
    from tests.serial_peers import ModbusPeer, PtyLink

    link = PtyLink()
    config = tmp_path / "config.toml"
    config.write_text(f"""
[storage]
state_dir = "{tmp_path / "state"}"
runtime_dir = "{tmp_path / "run"}"
[sensor]
kind = "modbus-pressure"
interval_s = 0.2
alarm_interval_s = 0.05
burst = 1
[sensor.modbus]
port = "{link.a.path}"
slave_id = 7
timeout_s = 0.3
scale = 0.001
unit = "m"
""")
    try:
        for register, staff in ((3100, "6.20"), (4300, "7.45")):  # 3.100 m, then 4.300 m deep
            peer = ModbusPeer(link.b.path, {0: register}, slave_id=7).start()
            try:
                point = run_cli(
                    "calibrate",
                    "--config",
                    str(config),
                    "point",
                    "--staff-gauge",
                    staff,
                    timeout=120,
                )
            finally:
                peer.stop()
            assert point.returncode == 0, point.stdout + point.stderr
        assert "point 2 recorded: staff gauge 7.450 m, depth 4.3000 m" in point.stdout
        span = run_cli("calibrate", "--config", str(config), "span", "--yes")
        assert span.returncode == 0, span.stdout + span.stderr
        values = tomllib.loads((tmp_path / "calibration.toml").read_text())["calibration"]
        assert values["scale"] == pytest.approx(1.25 / 1.20, abs=1e-4)
        assert values["offset_m"] + values["scale"] * 3.1 == pytest.approx(6.20, abs=1e-3)
        history = run_cli("calibrate", "--config", str(config), "history").stdout
        assert history.count("(a point for span, no change yet)") == 2 and "  span  " in history
    finally:
        link.close()
