"""The unit under a real systemd (PID 1 in a systemd-nspawn container), installed the way a
technician installs it: scripts/install from a wheelhouse, no network. A drop-in swaps the
hardware for the simulated sensor and gpiozero's mock pins, and shortens the watchdog to 6 s;
everything else is the shipped unit and the shipped installer.

The tests run in file order against one container (booting it is the slow part).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from tests.conftest import ROOT, wait_for
from tests.systemd_container import Container, cached_rootfs, unavailable_reason

pytestmark = [
    pytest.mark.skipif(
        unavailable_reason() is not None,
        reason=f"the systemd container test {unavailable_reason()}",
    ),
    pytest.mark.slow,  # the whole module: see pyproject's markers
]

UNIT = "gauge-agent.service"
TEST_DROP_IN = """[Service]
Environment=GPIOZERO_PIN_FACTORY=mock
ExecStart=
ExecStart=/opt/gauge-agent/venv/bin/gauge-agent run --simulate --config /etc/gauge-agent/config.toml
WatchdogSec=6
"""
# What a technician writes for this test: the simulated flood, 120 times faster than real, and
# an upstream URL but no token file (the credential's fallback must keep the gauge running).
TEST_CONFIG = """[station]
id = "benanga-test"
[sensor]
kind = "simulated"
[sensor.simulated]
scenario = "flash-flood"
time_scale = 120.0
[uplink]
url = "http://127.0.0.1:9/ingest"
"""


@pytest.fixture(scope="module")
def gauge(wheelhouse, tmp_path_factory):
    root = tmp_path_factory.mktemp("container") / "root"
    subprocess.run(
        ["cp", "-a", "--reflink=auto", str(cached_rootfs()), str(root)], check=True, timeout=600
    )
    source = root / "root" / "gauge-src"
    for name in ("scripts", "systemd"):
        shutil.copytree(ROOT / name, source / name)
    for name in ("config.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(wheelhouse, root / "root" / "wheels")
    container = Container(root).boot()
    try:
        container.run(
            "/root/gauge-src/scripts/install",
            "--wheelhouse",
            "/root/wheels",
            "--extras",
            "none",
            "--no-start",
            timeout=600,
        )
        container.write(f"/etc/systemd/system/{UNIT}.d/test.conf", TEST_DROP_IN)
        container.write("/etc/gauge-agent/config.toml", TEST_CONFIG, mode=0o640)
        container.run("systemctl", "daemon-reload")
        yield container
    finally:
        container.poweroff()
        shutil.rmtree(root, ignore_errors=True)


def status(container: Container) -> dict:
    result = container.run("cat", "/run/gauge-agent/status.json", check=False)
    try:
        return json.loads(result.stdout)
    except ValueError:
        return {}


def test_the_unit_is_active_after_ready_and_runs_as_its_user_reading_its_config(gauge):
    gauge.run("systemctl", "start", UNIT)  # Type=notify: returns once READY=1 came
    shown = gauge.show(UNIT, "ActiveState", "SubState", "StatusText", "MainPID")
    assert (shown["ActiveState"], shown["SubState"]) == ("active", "running")
    assert shown["StatusText"].startswith("sampling every")  # sent with READY=1
    uid = next(
        line.split(":")[2]
        for line in (gauge.root / "etc/passwd").read_text().splitlines()
        if line.startswith("gauge-agent:")
    )
    process_status = gauge.run("cat", f"/proc/{shown['MainPID']}/status").stdout
    assert f"Uid:\t{uid}\t" in process_status
    assert (
        gauge.run("stat", "-c", "%U:%G %a", "/etc/gauge-agent/config.toml").stdout.strip()
        == "root:gauge-agent 640"
    )
    as_service = gauge.run(
        "setpriv",
        "--reuid=gauge-agent",
        "--regid=gauge-agent",
        "--init-groups",
        "cat",
        "/etc/gauge-agent/config.toml",
        check=False,
    )
    assert as_service.returncode == 0 and "benanga-test" in as_service.stdout
    assert "Traceback" not in gauge.journal(UNIT)


def test_without_a_token_file_the_gauge_runs_and_stores_its_readings(gauge):
    assert not (gauge.root / "etc/gauge-agent/token").exists()
    wait_for(lambda: status(gauge).get("samples", 0) >= 3, 30, "three samples", poll_s=0.3)
    record = status(gauge)
    assert record["running"] and record["outbox"]["depth"] + record["outbox"].get("pending", 0) >= 3
    assert "no upstream token is installed" in gauge.journal(UNIT)


def test_a_technician_in_the_service_group_reads_through_the_control_socket(gauge):
    """The sandboxed service makes its control socket where a technician in its group (and
    no one else) can reach it: `read` gets the daemon's own samples, no second process opens
    the sensor."""
    for user in ("budi", "tamu"):
        gauge.run("useradd", "--create-home", user, check=False)
    gauge.run("usermod", "--append", "--groups", "gauge-agent", "budi")

    def as_user(user: str, *command: str) -> subprocess.CompletedProcess:
        return gauge.run(
            "setpriv",
            f"--reuid={user}",
            f"--regid={user}",
            "--init-groups",
            "/usr/local/bin/gauge-agent",
            *command,
            check=False,
            timeout=120,
        )

    technician = as_user("budi", "read", "--count", "2", "--json")
    assert technician.returncode == 0, technician.stderr
    samples = [json.loads(line) for line in technician.stdout.splitlines()]
    assert len(samples) == 2 and all("level_m" in sample for sample in samples)
    assert (
        gauge.run("stat", "-c", "%U:%G %a", "/run/gauge-agent/control.sock").stdout.strip()
        == "gauge-agent:gauge-agent 660"
    )
    stranger = as_user("tamu", "read", "--count", "1")
    assert stranger.returncode == 1 and "permission denied" in stranger.stderr.lower()


def test_a_stopped_main_process_is_killed_by_the_watchdog_and_takes_its_warning_up_again(gauge):
    wait_for(
        lambda: status(gauge).get("warning") == "awas", 60, "the simulated flood's awas", poll_s=0.3
    )
    before = gauge.show(UNIT, "MainPID", "NRestarts")
    gauge.run("systemctl", "kill", "--signal=SIGSTOP", "--kill-whom=main", UNIT)

    def restarted() -> dict | None:
        shown = gauge.show(UNIT, "MainPID", "NRestarts", "ActiveState")
        new_process = shown["MainPID"] not in ("0", before["MainPID"])
        return shown if new_process and shown["ActiveState"] == "active" else None

    after = wait_for(restarted, 40, "the watchdog restart", poll_s=0.3)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    assert "Failed with result 'watchdog'" in gauge.journal(UNIT)

    def first_status_of_the_new_process() -> dict | None:
        record = status(gauge)
        return record if record.get("pid") == int(after["MainPID"]) else None

    # The first status the new process writes (after its first sample) already warns Awas:
    # the runtime directory survived the restart, and with it the saved warning.
    first = wait_for(
        first_status_of_the_new_process, 20, "the restarted daemon's first status", poll_s=0.3
    )
    assert first["warning"] == "awas" and first["samples"] <= 2
    assert "restored warning AWAS" in gauge.journal(UNIT)


def test_stop_leaves_the_siren_off(gauge):
    gauge.run("systemctl", "stop", UNIT)
    shown = gauge.show(UNIT, "ActiveState", "Result", "ExecMainStatus")
    assert (shown["ActiveState"], shown["Result"], shown["ExecMainStatus"]) == (
        "inactive",
        "success",
        "0",
    )
    journal = gauge.journal(UNIT)
    assert "outputs released: siren off, green off, amber off, red off" in journal


def test_a_configuration_error_fails_the_unit_with_78_and_does_not_restart(gauge):
    gauge.write(
        "/etc/gauge-agent/config.toml", TEST_CONFIG + "[alarm]\noff_delay_s = -5\n", mode=0o640
    )
    started = gauge.run("systemctl", "start", UNIT, check=False)
    assert started.returncode != 0
    time.sleep(5)  # RestartSec is 2 s: a restart loop would show by now
    shown = gauge.show(UNIT, "ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert (shown["ActiveState"], shown["Result"], shown["ExecMainStatus"], shown["NRestarts"]) == (
        "failed",
        "exit-code",
        "78",
        "0",
    )
    assert "alarm.off_delay_s: -5" in gauge.journal(UNIT)
    gauge.write("/etc/gauge-agent/config.toml", TEST_CONFIG, mode=0o640)
    gauge.run("systemctl", "reset-failed", UNIT)


PROBE = """import errno, json, os
def attempt(path, flags):
    try:
        os.close(os.open(path, flags))
        return "ok"
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error.errno))
result = {path: attempt(path, os.O_RDONLY) for path in ("/proc/cpuinfo", "/proc/device-tree")}
for node in ("/dev/gpiochip0", "/dev/ttyUSB0", "/dev/ttyACM0", "/dev/not-allowed0"):
    result[node] = attempt(node, os.O_RDWR | os.O_NONBLOCK)
print("PROBE " + json.dumps(result), flush=True)
"""
# Device nodes with no driver behind them: opening one the sandbox allows answers ENXIO (no such
# device), one it refuses EPERM. Majors: ttyUSB 188 and ttyACM 166 are fixed; a GPIO chip's is
# dynamic, so an unassigned one stands in for it.
NODES = {"gpiochip0": (240, 0), "ttyUSB0": (188, 0), "ttyACM0": (166, 0), "not-allowed0": (241, 0)}


def probe_unit(unit_text: str, probe_path: str) -> str:
    """The gauge's unit, sandbox and all, running the probe once instead of the daemon."""
    unit = unit_text.replace("Type=notify", "Type=oneshot").replace(
        "ExecStart=/opt/gauge-agent/venv/bin/gauge-agent run --config /etc/gauge-agent/config.toml",
        f"ExecStart=/opt/gauge-agent/venv/bin/python {probe_path}",
    )
    return (
        "\n".join(
            line
            for line in unit.splitlines()
            if not line.startswith(("NotifyAccess=", "Restart", "WatchdogSec="))
        )
        + "\n"
    )


@pytest.fixture(scope="module")
def probe(gauge) -> dict:
    """The shipped unit's sandbox, with the probe as its program."""
    for name, (major, minor) in NODES.items():
        gauge.run("mknod", "-m", "0660", f"/dev/{name}", "c", str(major), str(minor))
        gauge.run("chgrp", "dialout", f"/dev/{name}")
    gauge.write("/opt/gauge-agent/probe.py", PROBE)
    gauge.write(
        "/etc/systemd/system/gauge-probe.service",
        probe_unit((ROOT / "systemd" / UNIT).read_text(), "/opt/gauge-agent/probe.py"),
    )
    gauge.run("systemctl", "daemon-reload")
    gauge.run("systemctl", "start", "gauge-probe.service")
    line = next(
        line
        for line in gauge.journal("gauge-probe.service").splitlines()
        if line.startswith("PROBE ")
    )
    return json.loads(line[len("PROBE ") :])


def test_the_sandbox_lets_the_service_identify_the_board_and_open_its_devices(probe):
    assert probe["/proc/cpuinfo"] == "ok"  # ProcSubset=pid hid it
    assert probe["/proc/device-tree"] in ("ok", "ENOENT")  # ENOENT: no device tree on a PC
    for node in ("/dev/gpiochip0", "/dev/ttyUSB0", "/dev/ttyACM0"):
        assert probe[node] == "ENXIO", (node, probe[node])  # reached the (missing) driver


def test_the_sandbox_refuses_a_device_it_does_not_list(probe):
    if probe["/dev/not-allowed0"] == "ENXIO":
        pytest.skip(
            "this container cannot enforce DevicePolicy= (a cgroup v1 host without BPF"
            " device control); tests/test_unit_on_the_pi.py checks the refusal on a Pi"
        )
    assert probe["/dev/not-allowed0"] == "EPERM"
