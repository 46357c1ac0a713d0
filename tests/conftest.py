from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import Config, build_config

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


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
