"""The systemd unit passes systemd's own checks; sd_notify reaches a real AF_UNIX socket."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.systemd import Notifier
from tests.conftest import ROOT, simulated_daemon

UNIT = ROOT / "systemd" / "gauge-agent.service"
needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed (.ci/run installs it)")


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
    result = subprocess.run(["systemd-analyze", "verify", str(unit_with_real_binary(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")


@needs_systemd
def test_unit_exposure_is_low(tmp_path):
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                             str(unit_with_real_binary(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for gauge-agent.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    assert float(match.group(1)) <= 2.5


def test_unit_does_not_wait_for_network_or_clock():
    text = UNIT.read_text()
    for target in ("network-online.target", "time-sync.target", "time-set.target"):
        assert target not in text
    assert "RestartPreventExitStatus=78" in text and "Type=notify" in text


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


def test_daemon_reports_ready_watchdog_and_stopping(tmp_path):
    sock, address = bound_socket(tmp_path)
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "10000000", "PATH": "/usr/bin:/bin",
           "GPIOZERO_PIN_FACTORY": "mock"}
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
