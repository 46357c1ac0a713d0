"""A Pi has no real-time clock: the wall clock jumps when NTP synchronises, by days, forward or
back. The real daemon runs under libfaketime (Debian's faketime, installed by .ci/run) with only
the wall clock moved (FAKETIME_DONT_FAKE_MONOTONIC=1: NTP never steps the monotonic clock)."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.clock import SyncWatch, clock_synchronised
from tests.conftest import ROOT, daemon_status, fast_config_text, wait_for

LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)
needs_faketime = pytest.mark.skipif(
    LIBFAKETIME is None, reason="libfaketime is not installed (.ci/run installs Debian's faketime)"
)

pytestmark = pytest.mark.slow  # the whole module: see pyproject's markers


def daemon_under_faketime(tmp_path: Path, offset_file: Path) -> subprocess.Popen:
    config = tmp_path / "config.toml"
    config.write_text(fast_config_text(tmp_path), encoding="utf-8")
    env = {
        **os.environ,
        "GPIOZERO_PIN_FACTORY": "mock",
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONFAULTHANDLER": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--simulate", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen, sig=signal.SIGTERM) -> str:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        _, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack
        _, stderr = process.communicate(timeout=20)
        raise AssertionError(f"the daemon did not stop within 20 s:\n{stderr[-6000:]}") from None
    return stderr


@needs_faketime
@pytest.mark.parametrize("step", ["+1d", "-1h"])
def test_a_wall_clock_step_between_a_crash_and_the_restart_keeps_the_saved_awas(tmp_path, step):
    """Reproduced on the old daemon: it aged the saved warning with the wall clock, so a step
    between a crash at the crest and the restart forgot the Awas."""
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    first = daemon_under_faketime(tmp_path, offset)
    try:
        wait_for(lambda: daemon_status(tmp_path).get("warning") == "awas", 40, "awas")
    finally:
        stop(first, signal.SIGKILL)  # a crash at the crest
    offset.write_text(f"{step}\n")  # NTP steps the clock meanwhile
    second = daemon_under_faketime(tmp_path, offset)
    try:
        first_status = wait_for(
            lambda: (lambda s: s if s.get("pid") == second.pid else None)(daemon_status(tmp_path)),
            20,
            "the restarted daemon's first status",
        )
        assert first_status["warning"] == "awas"
    finally:
        log = stop(second)
    assert "restored warning AWAS saved" in log and "Traceback" not in log


@needs_faketime
def test_a_wall_clock_step_while_running_neither_fires_nor_suppresses_anything(tmp_path):
    """The whole compressed flood with the wall clock stepped a day forward at Waspada and two
    hours back at Awas: the same levels in the same order, no fault, every delay on time."""
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    process = daemon_under_faketime(tmp_path, offset)
    try:
        wait_for(lambda: daemon_status(tmp_path).get("warning") == "waspada", 40, "waspada")
        offset.write_text("+1d\n")
        wait_for(lambda: daemon_status(tmp_path).get("warning") == "awas", 40, "awas")
        offset.write_text("-2h\n")
        wait_for(
            lambda: (
                daemon_status(tmp_path).get("samples", 0) > 0
                and daemon_status(tmp_path).get("warning") == "normal"
            ),
            60,
            "normal again",
        )
        final = daemon_status(tmp_path)
    finally:
        log = stop(process)
    levels = [
        line.split("level ", 1)[1].split()[0]
        for line in log.splitlines()
        if " WARNING level " in line
    ]
    assert levels == ["WASPADA", "SIAGA", "AWAS", "NORMAL"], log[-2000:]
    faults = [line for line in log.splitlines() if " fault " in line]
    assert final["faults"] == [] and faults == [], (final["faults"], log[-3000:])


def test_clock_synchronisation_is_read_from_timesyncd_and_unknown_without_it(tmp_path):
    assert clock_synchronised(tmp_path / "nothing-here") is None
    timesync = tmp_path / "timesync"
    timesync.mkdir()
    assert clock_synchronised(timesync) is False
    (timesync / "synchronized").touch()
    assert clock_synchronised(timesync) is True


def test_records_taken_before_the_clock_is_synchronised_say_so():
    from agent.daemon import Daemon
    from tests.conftest import FakeClock, config_from
    from tests.test_daemon import ScriptedSensor

    answers = iter([False, False, True, True])
    watch = SyncWatch(every_s=30.0, probe=lambda: next(answers), monotonic=lambda: 0.0)
    daemon = Daemon(
        config_from({"filter": {"acquire_samples": 1}}),
        ScriptedSensor([3.4] * 4),
        lambda frame: None,
        clock=FakeClock(),
        clock_synchronised=watch,
    )
    marks = []
    for _ in range(4):
        daemon.sample_once()
        marks.append(daemon.reading_record(daemon.last).get("clock_synchronised", "absent"))
    # Asked every time until synchronised, then every 30 s; marked only while unsynchronised.
    assert marks == [False, False, "absent", "absent"]
