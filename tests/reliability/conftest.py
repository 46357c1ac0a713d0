"""The fault-injection suite: the real daemon and the real receiver as processes, faults
injected from outside. Every test here carries the `reliability` and `slow` markers. CI runs the
fast numbers (`scripts/test`); `scripts/soak` sets GAUGE_SOAK=1 for the long ones and writes each
test's figures to out/reliability.json (the README's Reliability table)."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import ROOT

SOAK = os.environ.get("GAUGE_SOAK") == "1"
RESULTS = ROOT / "out" / "reliability.json"


def scale(ci: int, soak: int) -> int:
    return soak if SOAK else ci


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/reliability/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def report():
    """report(fault, tried, lost, **figures): one row of the Reliability table."""

    def write(fault: str, tried: int, lost: int, **figures) -> None:
        RESULTS.parent.mkdir(exist_ok=True)
        rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        rows[fault] = {"tried": tried, "lost": lost, "soak": SOAK, **figures}
        RESULTS.write_text(json.dumps(rows, indent=1, sort_keys=True))
        print(f"RELIABILITY {fault}: tried {tried}, lost {lost} {figures}")

    return write
