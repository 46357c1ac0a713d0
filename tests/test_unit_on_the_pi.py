"""What only a Raspberry Pi with the gauge installed (scripts/install) can show about the unit:
its sandbox refuses devices it does not list (the nspawn container on the development machine
cannot enforce DevicePolicy=), and gpiozero finds the lgpio back-end under it. Skipped elsewhere;
run as root on the Pi, from a checkout:
`sudo /opt/gauge-agent/venv/bin/pip install pytest hypothesis` once, then
`sudo /opt/gauge-agent/venv/bin/python -m pytest tests/test_unit_on_the_pi.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.test_unit_in_systemd import PROBE, probe_unit

INSTALLED_UNIT = Path("/etc/systemd/system/gauge-agent.service")
PROBE_UNIT = Path("/run/systemd/system/gauge-probe.service")
PROBE_SCRIPT = Path("/opt/gauge-agent/probe-test.py")


@pytest.mark.hardware
def test_the_installed_units_sandbox_refuses_unlisted_devices_and_gpiozero_finds_lgpio():
    if os.geteuid() != 0 or not INSTALLED_UNIT.exists():
        pytest.skip("run as root on a Pi where scripts/install has installed the gauge")
    forbidden = Path("/dev/not-allowed0")
    subprocess.run(["mknod", "-m", "0666", str(forbidden), "c", "241", "0"], check=True)
    PROBE_SCRIPT.write_text(
        PROBE + "from gpiozero import Device\n"
        "print('FACTORY ' + type(Device._default_pin_factory()).__name__)\n"
    )
    PROBE_UNIT.write_text(probe_unit(INSTALLED_UNIT.read_text(), str(PROBE_SCRIPT)))
    try:
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        subprocess.run(["systemctl", "start", "gauge-probe.service"], check=True, timeout=120)
        journal = subprocess.run(
            ["journalctl", "-u", "gauge-probe.service", "-o", "cat", "--no-pager"],
            capture_output=True,
            text=True,
        ).stdout
    finally:
        forbidden.unlink()
        PROBE_UNIT.unlink()
        PROBE_SCRIPT.unlink()
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    lines = journal.splitlines()
    probe = json.loads(next(line for line in reversed(lines) if line.startswith("PROBE "))[6:])
    assert probe["/dev/not-allowed0"] == "EPERM"
    assert probe["/proc/cpuinfo"] == probe["/proc/device-tree"] == "ok"
    assert probe["/dev/gpiochip0"] == "ok"
    assert (
        next(line for line in reversed(lines) if line.startswith("FACTORY "))
        == "FACTORY LGPIOFactory"
    )
