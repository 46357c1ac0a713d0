"""The daemon: the real loop, the real threads, the simulated sensor and gpiozero mock pins."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from agent.daemon import Daemon
from agent.outputs import GpioOutputs
from agent.status import StatusWriter
from tests.conftest import (
    ROOT,
    FakeClock,
    config_from,
    daemon_status,
    run_cli,
    simulated_daemon,
    wait_for,
)


@pytest.mark.slow
def test_simulated_flood_runs_through_every_level_and_stops_cleanly_on_sigterm(tmp_path):
    with simulated_daemon(tmp_path) as process:
        wait_for(
            lambda: daemon_status(tmp_path).get("state") == "awas",
            30,
            "the simulated flood to reach awas",
        )
        status = daemon_status(tmp_path)
        assert status["siren"]["pattern"] == "continuous" and status["interval_s"] < 0.2
        shown = run_cli("status", "--config", str(tmp_path / "config.toml"))
        assert shown.returncode == 0, shown.stderr
        assert " state AWAS " in shown.stdout and " siren continuous " in shown.stdout
        as_json = run_cli("status", "--json", "--config", str(tmp_path / "config.toml"))
        assert json.loads(as_json.stdout)["running"] is True
        wait_for(
            lambda: daemon_status(tmp_path).get("warning") == "normal",
            30,
            "the flood to recede to normal",
        )
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    changes = [line.split(" ", 3)[3] for line in stderr.splitlines() if " WARNING level " in line]
    assert len(changes) >= 4 and all(change.startswith("level ") for change in changes)
    states = [c.split()[1] for c in changes]
    assert states[:3] == ["WASPADA", "SIAGA", "AWAS"] and states[-1] == "NORMAL"
    assert "siren continuous" in stderr and "SIGTERM received, stopping" in stderr
    assert "Traceback" not in stderr
    final = daemon_status(tmp_path)
    assert final["running"] is False and final["warning"] == "normal"
    stopped = run_cli("status", "--config", str(tmp_path / "config.toml"))
    assert stopped.returncode == 1 and stopped.stdout.rstrip().endswith("[STOPPED]")


@pytest.mark.slow
def test_sigint_stops_it_too(tmp_path):
    with simulated_daemon(tmp_path) as process:
        wait_for(lambda: daemon_status(tmp_path), 20, "the first status")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0 and "SIGINT received, stopping" in stderr


class ScriptedSensor:
    """Reads from a list; an Exception in the list is raised, a float is a distance."""

    value_kind = "distance"
    unit = "m"
    unit_to_m = 1.0

    def __init__(self, script, delay_s: float = 0.0):
        self.script = list(script)
        self.delay_s = delay_s
        self.hanging = threading.Event()  # set while a read with a delay is under way

    def read_burst(self, count):
        if self.delay_s:
            self.hanging.set()
            time.sleep(self.delay_s)
            self.hanging.clear()
        item = self.script.pop(0) if self.script else None
        if isinstance(item, Exception):
            raise item
        return [(item, None if item is not None else "no_echo")]

    def close(self):
        pass


def test_sampling_speeds_up_in_alarm_and_a_crashing_driver_is_no_reading(caplog):
    config = config_from(
        {
            "filter": {"acquire_samples": 1, "window": 1, "max_rate_m_per_min": 100.0},
            "sensor": {"fail_to_fault": 2},
        }
    )
    clock = FakeClock()
    sensor = ScriptedSensor([3.5, 2.0, OSError("bus error"), OSError("bus error"), 2.0])
    daemon = Daemon(config, sensor, lambda frame: None, clock=clock)
    intervals, faults = [], []
    for _ in range(5):
        daemon.sample_once()
        intervals.append(daemon.interval())
        faults.append(daemon.engine.active_faults)
        clock.now += daemon.interval()
    # 3.5 m below the sensor is 6.90 m (normal); 2.0 m is 8.40 m (siaga): 2 s sampling.
    assert intervals == [10.0, 2.0, 2.0, 2.0, 2.0]
    assert Daemon(config, sensor, lambda frame: None, clock=clock).interval() == 2.0  # no level yet
    assert faults == [[], [], [], ["sensor"], []]
    assert daemon.last.reason is None and daemon.engine.state_name == "siaga"
    assert "sensor read failed: bus error" in caplog.text


def test_a_jump_after_a_silence_is_confirmed_at_the_alarm_rate_and_sounds_awas_2_s_later():
    """The gauge loses its echo for ten hours (a storm took the power) and comes back reading
    9.00 m. The gate waits for one more reading before it believes the jump; the daemon takes
    that reading at the alarm rate, so Awas sounds 2 s after the first one."""
    config = config_from({})  # the shipped Benanga filter and thresholds
    clock = FakeClock()
    sensor = ScriptedSensor([3.40] * 6 + [None] * 3600 + [1.40] * 3)  # 7.00 m, ..., 9.00 m
    daemon = Daemon(config, sensor, lambda frame: None, clock=clock)
    seen = []  # (time, reason, next interval, warning) for each sample after the silence
    while sensor.script:
        silent = len(sensor.script) > 3
        daemon.sample_once()
        if not silent:
            seen.append(
                (clock.now, daemon.last.reason, daemon.interval(), daemon.engine.warning_name)
            )
        clock.now += daemon.interval()
    (back, *_), confirming = seen[0], seen[1]
    assert seen[0][1:] == ("unconfirmed", 2.0, "normal")
    assert confirming[0] - back == 2.0 and confirming[1:] == (None, 2.0, "awas")


def test_status_reports_the_false_echoes_the_gauge_has_learned(tmp_path):
    config = config_from({"filter": {"acquire_samples": 1}})
    clock = FakeClock()
    visits = ([3.40] * 20 + [1.50, 1.51]) * 4 + [3.40] * 5  # an object at 1.5 m comes and goes
    daemon = Daemon(
        config,
        ScriptedSensor(visits),
        lambda frame: None,
        clock=clock,
        status=StatusWriter(tmp_path),
    )
    for _ in visits:
        daemon.sample_once()
        clock.now += daemon.interval()
    echoes = json.loads((tmp_path / "status.json").read_text())["sensor"]["false_echoes"]
    assert [(e["distance_m"], e["level_m"], e["episodes"]) for e in echoes] == [
        (pytest.approx(1.505, abs=0.006), pytest.approx(8.895, abs=0.006), 4)
    ]
    assert daemon.heartbeat_record(clock.now)["false_echo_levels_m"] == [echoes[0]["level_m"]]
    assert daemon.engine.warning_name == "normal"


@pytest.mark.slow
def test_the_siren_keeps_its_pattern_while_a_sensor_read_hangs(mock_factory):
    config = config_from(
        {"filter": {"acquire_samples": 1, "window": 1}, "outputs": {"heartbeat_s": 0.5}}
    )
    outputs = GpioOutputs(config.outputs, pin_factory=mock_factory)
    sensor = ScriptedSensor([1.5, 1.5, 1.5], delay_s=0.0)  # 8.90 m: awas, siren continuous
    daemon = Daemon(config, sensor, outputs.apply)
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,))
    try:
        runner.start()
        wait_for(lambda: daemon.engine.state_name == "awas", 5, "awas")
        sensor.delay_s = 3.0  # the next read hangs for three seconds
        wait_for(sensor.hanging.is_set, 5, "a read to hang")
        heartbeat = mock_factory.pin(22).states
        heartbeat_before = len(heartbeat)
        # The heartbeat lamp toggles every 0.25 s: the output thread keeps working.
        wait_for(lambda: len(heartbeat) - heartbeat_before >= 3, 2.5, "three heartbeat edges")
        assert sensor.hanging.is_set()  # all of it while the read hung
        assert mock_factory.pin(17).state  # the siren is sounding
    finally:
        stop.set()
        runner.join(timeout=10)
        outputs.close()
    assert not runner.is_alive()
    assert [bool(s.state) for s in mock_factory.pin(17).states] == [False, True, False]


def test_an_unwritable_status_directory_is_logged_and_sampling_goes_on(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the runtime directory should be")
    config = config_from({"filter": {"acquire_samples": 1}})
    clock = FakeClock()
    daemon = Daemon(
        config,
        ScriptedSensor([3.5] * 3),
        lambda frame: None,
        clock=clock,
        status=StatusWriter(blocker / "run"),
    )
    for _ in range(3):
        daemon.sample_once()
        clock.now += 10
    assert daemon.samples == 3 and daemon.engine.level_m == pytest.approx(6.9)
    assert caplog.text.count("status not written") == 1


def test_a_storage_problem_is_a_fault_that_blinks_amber_but_never_freezes_the_warning(caplog):
    config = config_from(
        {
            "filter": {"acquire_samples": 1, "window": 1, "max_rate_m_per_min": 100.0},
            "alarm": {"off_delay_s": 0.0},
        }
    )
    clock = FakeClock()
    daemon = Daemon(
        config,
        ScriptedSensor([1.5, 3.5]),
        lambda frame: None,
        clock=clock,
        storage_problem="cannot open the outbox: read-only file system",
    )
    daemon.sample_once()
    assert daemon.all_faults() == ["storage"] and daemon.engine.state_name == "awas"
    assert daemon.annunciator.faults == ("storage",)
    clock.now += 2.0
    daemon.sample_once()  # the water falls: the state steps down anyway
    assert daemon.engine.state_name == "normal"
    assert "fault storage RAISED" in caplog.text


def test_a_full_card_raises_storage_keeps_sampling_and_clears_when_space_returns(tmp_path):
    from agent.outbox import Outbox

    config = config_from({"filter": {"acquire_samples": 1, "window": 1}})
    outbox = Outbox(tmp_path / "outbox.sqlite", max_page_count=12)
    clock = FakeClock()
    daemon = Daemon(
        config, ScriptedSensor([1.5] * 400), lambda frame: None, clock=clock, outbox=outbox
    )
    try:
        for _ in range(300):  # 300 readings do not fit in 12 KiB
            daemon.sample_once()
            outbox.flush()
            clock.now += 2.0
        assert "storage" in daemon.all_faults() and daemon.engine.state_name == "awas"
        assert daemon.annunciator.faults == ("storage",)
        outbox.max_page_count = None  # the technician frees space
        daemon.sample_once()
        outbox.flush(timeout=15)
        daemon.sample_once()
        assert daemon.all_faults() == []
        assert outbox.stats()["held_in_memory"] == 0 and outbox.stats()["depth"] >= 302
    finally:
        outbox.close()


def test_a_restart_during_an_alarm_keeps_warning_while_the_gate_reacquires(tmp_path, caplog):
    config = config_from(
        {"filter": {"acquire_samples": 3, "window": 1, "max_rate_m_per_min": 100.0}}
    )
    warning_file = tmp_path / "run" / "warning.json"
    warning_file.parent.mkdir()
    first = Daemon(
        config,
        ScriptedSensor([1.5] * 3),
        lambda frame: None,
        clock=FakeClock(),
        warning_file=warning_file,
    )
    for _ in range(3):
        first.sample_once()
        first.clock.now += 2.0
    assert first.engine.state_name == "awas"
    # The watchdog restarts the process: a new daemon, no level yet (acquiring).
    second = Daemon(
        config,
        ScriptedSensor([1.5]),
        lambda frame: None,
        clock=FakeClock(),
        warning_file=warning_file,
    )
    assert second.engine.state_name == "awas" and second.engine.siren_pattern == "continuous"
    second.sample_once()
    assert second.last.reason == "acquiring" and second.engine.state_name == "awas"
    assert "restored warning AWAS" in caplog.text


def test_an_old_or_unknown_saved_warning_is_not_taken_up(tmp_path):
    import json

    config = config_from({"alarm": {"restore_within_s": 600.0}})
    warning_file = tmp_path / "warning.json"
    boot = "4c1e0b6c-0000-4000-8000-000000000001"
    for saved in (
        {"state": "awas", "rate_active": False, "boot_id": boot, "since_boot_s": 400.0},
        {"state": "bahaya", "rate_active": False, "boot_id": boot, "since_boot_s": 3990.0},
        {"state": "awas"},
    ):
        warning_file.write_text(json.dumps(saved))
        daemon = Daemon(
            config,
            ScriptedSensor([]),
            lambda frame: None,
            clock=FakeClock(),
            warning_file=warning_file,
            boot_id=boot,
            since_boot=lambda: 4000.0,
        )
        assert daemon.engine.state_name == "normal", saved  # an hour old; unknown; damaged
    warning_file.write_text("{not json")
    assert (
        Daemon(
            config,
            ScriptedSensor([]),
            lambda frame: None,
            clock=FakeClock(),
            warning_file=warning_file,
        ).engine.state_name
        == "normal"
    )


@pytest.mark.parametrize("wall_step_s", [86400.0, -3600.0, 0.0])
def test_a_saved_warning_is_aged_by_the_boot_clock_so_a_wall_clock_step_cannot_drop_it(
    tmp_path, wall_step_s
):
    """No RTC: between a crash and the restart NTP may step the wall clock by a day, or back
    an hour. The saved Awas is 30 s old by this boot's clock, whatever the wall clock says."""
    import json

    config = config_from({"alarm": {"restore_within_s": 600.0}})
    warning_file = tmp_path / "warning.json"
    boot = "4c1e0b6c-0000-4000-8000-000000000001"
    wall_then = 1_800_000_000.0
    warning_file.write_text(
        json.dumps(
            {
                "state": "awas",
                "rate_active": False,
                "boot_id": boot,
                "since_boot_s": 1000.0,
                "saved_epoch": wall_then,
            }
        )
    )
    daemon = Daemon(
        config,
        ScriptedSensor([]),
        lambda frame: None,
        clock=FakeClock(),
        wall=lambda: wall_then + 30.0 + wall_step_s,
        warning_file=warning_file,
        boot_id=boot,
        since_boot=lambda: 1030.0,
    )
    assert daemon.engine.state_name == "awas"


def test_a_warning_saved_in_another_boot_is_taken_up_until_fresh_readings_say_otherwise(tmp_path):
    import json

    config = config_from(
        {"filter": {"acquire_samples": 1, "window": 1}, "alarm": {"off_delay_s": 60.0}}
    )
    warning_file = tmp_path / "warning.json"
    warning_file.write_text(
        json.dumps(
            {
                "state": "awas",
                "rate_active": False,
                "boot_id": "an-earlier-boot",
                "since_boot_s": 50.0,
            }
        )
    )
    clock = FakeClock()
    daemon = Daemon(
        config,
        ScriptedSensor([3.40] * 60),
        lambda frame: None,
        clock=clock,
        warning_file=warning_file,
        boot_id="this-boot",
        since_boot=lambda: 20.0,
    )
    assert daemon.engine.state_name == "awas"
    for _ in range(60):  # the water is at 7.00 m: normal after the off-delay
        daemon.sample_once()
        clock.now += daemon.interval()
    assert daemon.engine.state_name == "normal"


STOP_STRESS = """
import signal, sys
from agent.main import StopRequest
for round in range(3000):
    stop = StopRequest()
    signal.signal(signal.SIGALRM, lambda *_: stop.set())
    signal.setitimer(signal.ITIMER_REAL, 0.0002)
    while not stop.wait(0.0001):
        pass
    stop.close()
print("done")
"""


@pytest.mark.slow
def test_a_stop_requested_by_a_signal_handler_can_never_deadlock_the_main_loop():
    """With threading.Event, a SIGTERM that arrived while the main loop's own Event.wait() held
    its lock hung the daemon for ever (systemd would then SIGKILL it, the siren relay left as
    it was). 3,000 signals at random points of the wait, in a child so a hang cannot hang CI."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", STOP_STRESS], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.stdout.strip() == "done", result.stderr


class BrokenSensor(ScriptedSensor):
    """Answers a type the pipeline cannot take: a bug somewhere on the sampling path."""

    def read_burst(self, count):
        item = self.script.pop(0) if self.script else None
        if item == "bug":
            return [("3.40", None)]  # a string where a number belongs
        return [(item, None)]


def test_a_bug_on_the_sampling_path_is_the_internal_fault_and_sampling_goes_on(caplog):
    config = config_from({"filter": {"acquire_samples": 1, "window": 1}})
    clock = FakeClock()
    sensor = BrokenSensor([1.50, "bug", "bug", 1.50, 1.50])  # awas, then the bug, twice
    daemon = Daemon(config, sensor, lambda frame: None, clock=clock)
    faults, warnings_seen = [], []
    for _ in range(5):
        daemon._supervised("sampling", daemon.sample_once)
        faults.append("internal" in daemon.all_faults())
        warnings_seen.append(daemon.engine.warning_name)
        clock.now += 2.0
    assert faults == [False, True, True, False, False]
    assert warnings_seen == ["awas"] * 5  # the siren kept what it had decided
    assert caplog.text.count("sampling: unexpected TypeError") == 1  # logged once
    assert daemon.status_record()["threads"] == {}
