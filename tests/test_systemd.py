"""The systemd unit passes systemd's own checks; sd_notify reaches a real AF_UNIX socket."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.systemd import Notifier
from tests.conftest import ROOT, config_from, simulated_daemon

UNIT = ROOT / "systemd" / "gauge-agent.service"
needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (.ci/run installs it)",
)


def unit_with_real_binary(tmp_path: Path) -> Path:
    """The unit as shipped, but pointing at the gauge-agent this test environment installed,
    because systemd-analyze verify checks that ExecStart exists and is executable."""
    binary = Path(sys.prefix) / "bin" / "gauge-agent"
    assert binary.exists(), binary
    path = tmp_path / "gauge-agent.service"
    path.write_text(UNIT.read_text().replace("/opt/gauge-agent/venv/bin/gauge-agent", str(binary)))
    return path


@needs_systemd
def test_unit_passes_systemd_analyze_verify_with_nothing_on_stderr(tmp_path):
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_with_real_binary(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, "")


@needs_systemd
def test_unit_exposure_is_low(tmp_path):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit_with_real_binary(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for gauge-agent.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    assert float(match.group(1)) <= 2.0  # 1.5 with this unit; README states it


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_does_not_wait_for_network_or_clock():
    text = UNIT.read_text()
    for target in ("network-online.target", "time-sync.target", "time-set.target"):
        assert target not in text
    assert "RestartPreventExitStatus=78" in text and "Type=notify" in text


def test_unit_lets_the_pi_work_under_it():
    """What stopped the siren on a real Pi (issue #8), each kept out of the unit."""
    settings = unit_settings()
    assert "ProcSubset" not in settings  # gpiozero and Blinka read /proc/cpuinfo
    assert "ExecStartPre" not in settings  # its exit 78 restart-looped the unit
    assert settings["RuntimeDirectoryPreserve"] == ["restart"]  # the saved warning survives
    assert settings["Environment"] == ["LG_WD=%t/gauge-agent"]  # lgpio's FIFO, / is read-only
    assert settings["SetCredential"] == ["token:no-token-installed"]  # no token: still runs
    assert {"char-ttyUSB rw", "char-ttyACM rw", "/dev/ttyUSB0 rw", "/dev/ttyACM0 rw"} <= set(
        settings["DeviceAllow"]
    )
    assert "modprobe@usbserial.service" in settings["After"][0]


def test_check_config_keeps_the_longest_sample_under_half_the_units_watchdog(monkeypatch):
    from agent.config import UNIT_WATCHDOG_S, build_config
    from agent.errors import ConfigError

    assert unit_settings()["WatchdogSec"] == [f"{UNIT_WATCHDOG_S:g}"]
    serial = {"kind": "serial-ultrasonic", "serial": {"timeout_s": 1.0}}
    build_config({"sensor": {**serial, "burst": 29}})  # 29 s < 30 s
    with pytest.raises(ConfigError) as caught:
        build_config({"sensor": {**serial, "burst": 30}})
    assert caught.value.problems[0].startswith(
        "sensor.burst: 30 reads that all time out keep one sample 30 s"
    )
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")  # what systemd says wins
    build_config({"sensor": {**serial, "burst": 30}})


def bound_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(tmp_path / "notify.sock")
    sock.bind(address)
    sock.settimeout(20)
    return sock, address


def test_notifier_sends_datagrams_and_does_nothing_without_a_socket(tmp_path):
    sock, address = bound_socket(tmp_path)
    with sock:
        assert Notifier(address).ready("sampling")
        assert sock.recv(4096) == b"READY=1\nSTATUS=sampling"
    assert Notifier(address="").ready() is False
    assert Notifier(str(tmp_path / "gone.sock")).watchdog() is False  # a failed send is harmless


@pytest.mark.slow
def test_daemon_reports_ready_watchdog_and_stopping(tmp_path):
    sock, address = bound_socket(tmp_path)
    env = {
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "10000000",
        "PATH": "/usr/bin:/bin",
        "GPIOZERO_PIN_FACTORY": "mock",
    }
    with sock, simulated_daemon(tmp_path, env=env, stderr=subprocess.DEVNULL) as process:
        messages = [sock.recv(4096).decode()]
        deadline = time.monotonic() + 10
        while messages.count("WATCHDOG=1") < 3 and time.monotonic() < deadline:
            messages.append(sock.recv(4096).decode())
        process.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in messages:
            messages.append(sock.recv(4096).decode())
        assert process.wait(timeout=10) == 0
    assert messages[0].startswith("READY=1\nSTATUS=sampling every")
    assert messages.count("WATCHDOG=1") >= 3 and messages[-1] == "STOPPING=1"


class HangingSensor:
    """Reads 3.40 m; from read number `hang_from` on, a read never returns until released."""

    value_kind, unit, unit_to_m = "distance", "m", 1.0

    def __init__(self, hang_from: int):
        self.hang_from = hang_from
        self.release = threading.Event()
        self.reads = 0

    def read_burst(self, count):
        self.reads += 1
        if self.reads >= self.hang_from:
            self.release.wait()
        return [(3.4, None)]

    def close(self):
        pass


def watchdog_pings_while(sock: socket.socket, seconds: float) -> int:
    pings, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            pings += sock.recv(4096) == b"WATCHDOG=1"
        except TimeoutError:
            pass
    return pings


def run_daemon_with_watchdog(tmp_path, monkeypatch, interval_s: float, sensor):
    from agent.daemon import Daemon

    sock, address = bound_socket(tmp_path)
    sock.settimeout(0.1)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # WatchdogSec=0.4 s: ping every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    config = config_from(
        {
            "sensor": {"interval_s": interval_s, "alarm_interval_s": interval_s},
            "filter": {"acquire_samples": 1},
        }
    )
    daemon = Daemon(config, sensor, lambda frame: None, notifier=Notifier(address))
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,))
    runner.start()
    return sock, stop, runner


@pytest.mark.slow
def test_the_watchdog_is_pinged_every_half_period_even_with_a_ten_minute_interval(
    tmp_path, monkeypatch
):
    """sensor.interval_s = 600 s under WatchdogSec=0.4 s: the old loop pinged once per sample
    and would be killed every cycle; now it wakes to ping every 0.2 s between samples."""
    sensor = HangingSensor(hang_from=99)
    sock, stop, runner = run_daemon_with_watchdog(tmp_path, monkeypatch, 600.0, sensor)
    try:
        assert watchdog_pings_while(sock, 1.5) >= 5 and sensor.reads == 1
    finally:
        stop.set()
        runner.join(timeout=10)
        sock.close()


@pytest.mark.slow
def test_a_read_that_hangs_stops_the_watchdog_pings(tmp_path, monkeypatch):
    sensor = HangingSensor(hang_from=3)
    sock, stop, runner = run_daemon_with_watchdog(tmp_path, monkeypatch, 0.3, sensor)
    try:
        deadline = time.monotonic() + 10
        while sensor.reads < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # a ping already on its way may still land
        while True:
            try:
                sock.recv(4096)
            except TimeoutError:
                break
        assert sensor.reads == 3 and watchdog_pings_while(sock, 1.0) == 0
    finally:
        sensor.release.set()
        stop.set()
        runner.join(timeout=10)
        sock.close()
