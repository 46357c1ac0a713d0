from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import Config, build_config

ROOT = Path(__file__).resolve().parent.parent
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
    skip = pytest.mark.skip(reason="hardware test: needs a Raspberry Pi with the gauge wired"
                                   " (/proc/device-tree/model names none here)")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


def config_from(data: dict | None = None) -> Config:
    """A Config from plain TOML-shaped data on top of the embedded defaults."""
    return build_config(data or {})


def run_cli(*args: str, timeout: float = 60, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real command line in a child process, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def mock_factory():
    from gpiozero.pins.mock import MockFactory
    factory = MockFactory()
    yield factory
    factory.close()


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not here (the shared development data sits beside the checkout)")
    return path
