"""The README's first command: `scripts/demo` runs the real daemon on the simulated flood with
the reference receiver as its upstream, and says so with exit 0."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # the whole module: see pyproject's markers


def test_the_demo_runs_the_flood_through_every_level_and_exits_0():
    result = subprocess.run(
        [str(ROOT / "scripts" / "demo")], capture_output=True, text=True, timeout=240, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "the flood rose to AWAS and receded to NORMAL: demo done" in result.stdout
    assert "== the local upstream stored" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
