from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.config import Config, build_config

ROOT = Path(__file__).resolve().parent.parent
# The tests read English; tests/test_i18n.py asks for Indonesian itself. LANGUAGE comes first
# in gettext's search, so a machine set up in Indonesian does not change what the tests see.
os.environ["LANGUAGE"] = "en"
# The real recordings live in the workplace's shared/ folder beside the checkout.
SHARED_DATA = Path(os.environ.get("GAUGE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _on_a_raspberry_pi() -> bool:
    try:
        return "Raspberry Pi" in Path("/proc/device-tree/model").read_text(errors="replace")
    except OSError:
        return False


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.hardware` tests need the real board and wiring; elsewhere they are skipped
    and say so (they are never counted as passed)."""
    if _on_a_raspberry_pi():
        return
    skip = pytest.mark.skip(
        reason="hardware test: needs a Raspberry Pi with the gauge wired"
        " (/proc/device-tree/model names none here)"
    )
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


def config_from(data: dict | None = None) -> Config:
    """A Config from plain TOML-shaped data on top of the embedded defaults."""
    return build_config(data or {})


def run_cli(
    *args: str,
    timeout: float = 60,
    env: dict | None = None,
    cwd: Path | None = None,
    input: str = "",
) -> subprocess.CompletedProcess:
    """The real command line in a child process, as a user would run it; `input` is what the
    user types (answers to its questions)."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def mock_factory():
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """gauge-agent's wheel, built from this tree exactly as `pip install .` builds it, and the
    wheels of everything it needs (no sensor extras: the simulated sensor needs none)."""
    directory = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(directory),
            str(ROOT),
        ],
        check=True,
        timeout=600,
        capture_output=True,
    )
    return directory


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not here (the shared development data sits beside the checkout)")
    return path


# The flash-flood scenario compressed 240 times: 80 minutes in 20 seconds. Every time-based
# setting is scaled by the same factor, so the daemon sees the flood a real dam would see.
FAST = 240.0


def fast_config_text(tmp_path: Path) -> str:
    return f"""
[sensor]
kind = "simulated"
interval_s = {10 / FAST * 12:.4f}
alarm_interval_s = {2 / FAST * 12:.4f}
burst = 3
[sensor.simulated]
scenario = "flash-flood"
time_scale = {FAST}
repeat = false
[filter]
max_rate_m_per_min = {0.5 * FAST}
reject_to_fault_s = 5
[alarm]
off_delay_s = {900 / FAST:.3f}
stale_after_s = 5
[alarm.rate]
window_s = {1800 / FAST:.3f}
rise_m_per_h = {0.05 * FAST}
[storage]
state_dir = "{tmp_path / "state"}"
runtime_dir = "{tmp_path / "run"}"
"""


@contextlib.contextmanager
def running_daemon(config: Path, *args: str, env: dict | None = None, stderr=subprocess.PIPE):
    """`gauge-agent run --config CONFIG [args]` as a child process that is always killed when
    the test ends, whatever happened. Outputs use gpiozero's mock pins (no GPIO here)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config), *args],
        cwd=ROOT,
        stderr=stderr,
        text=True,
        env=env if env is not None else {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        if process.stderr is not None:
            process.stderr.close()


def simulated_daemon(tmp_path: Path, env: dict | None = None, stderr=subprocess.PIPE):
    """The daemon on the compressed simulated flood."""
    config = tmp_path / "config.toml"
    config.write_text(fast_config_text(tmp_path), encoding="utf-8")
    return running_daemon(config, "--simulate", env=env, stderr=stderr)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (for a server that is down or comes
    up later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FakeClock:
    """Time that moves only when the test moves it (`clock.now = ...`, `advance`). Passed where
    the code takes a `clock` callable; `sleep` records what the code asked for and returns."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def wait_for(predicate, timeout: float = 15.0, what: str = "the condition", poll_s: float = 0.05):
    """Poll `predicate` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def daemon_status(tmp_path: Path) -> dict:
    """The status file a daemon with runtime_dir = tmp_path/run wrote; {} if none yet."""
    try:
        return json.loads((tmp_path / "run" / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def calm_config(
    tmp_path: Path,
    noise_m: float = 0.002,
    calibrated_elevation_m: float = 10.40,
    mount_elevation_m: float = 10.40,
) -> str:
    """A configuration file for still water at 6.90 m under a simulated sensor hanging at
    `mount_elevation_m`, calibrated as if it hung at `calibrated_elevation_m` (then the gauge
    shows the difference), sampling fast. Returns its path."""
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[storage]
state_dir = "{tmp_path / "state"}"
runtime_dir = "{tmp_path / "run"}"
[calibration]
sensor_elevation_m = {calibrated_elevation_m}
[sensor]
interval_s = 0.2
alarm_interval_s = 0.1
[sensor.simulated]
scenario = "calm"
mount_elevation_m = {mount_elevation_m}
noise_m = {noise_m}
spike_probability = 0.0
no_echo_probability = 0.0
"""
    )
    return str(path)
