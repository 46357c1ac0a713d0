"""The daemon's control socket and `gauge-agent read`: against the real socket, the real
command line, a running simulated daemon, and the simulated sensor opened by the command."""

from __future__ import annotations

import json
import queue
import socket
import sqlite3
import stat
import threading

import pytest

from agent import control
from agent.control import FEED_QUEUE, ControlServer, SampleFeed, read_handler
from agent.supervision import ThreadHealth
from tests.conftest import (
    calm_config,
    daemon_status,
    run_cli,
    running_daemon,
    simulated_daemon,
    wait_for,
)


def ask(path, raw: bytes, timeout: float = 5.0) -> list[dict]:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(timeout)
        client.connect(str(path))
        client.sendall(raw)
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def server(tmp_path):
    feed = SampleFeed()
    running = ControlServer(
        tmp_path, "benanga-01", {"read": read_handler(feed, lambda: 5.0)}, ThreadHealth()
    )
    assert running.start()
    yield running, feed
    running.stop()


def test_a_reader_gets_the_next_samples_then_done(server):
    running, feed = server
    answers: list[dict] = []
    client = threading.Thread(
        target=lambda: answers.extend(ask(running.path, b'{"command": "read", "count": 3}\n'))
    )
    client.start()
    wait_for(feed.listening, 5, "the reader to subscribe")
    for level in (7.1, 7.2, 7.3, 7.4):
        feed.publish({"level_m": level})
    client.join(5)
    assert answers == [
        {"sample": {"level_m": 7.1}},
        {"sample": {"level_m": 7.2}},
        {"sample": {"level_m": 7.3}},
        {"ok": True, "done": True},
    ]
    wait_for(lambda: not feed.listening(), 5, "the reader to leave")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"not json\n", "a request is one line of JSON"),
        (b"[1, 2]\n", "a request is a JSON object"),
        (b'{"command": "format-the-card"}\n', "unknown command 'format-the-card'"),
        (b'{"command": "read", "count": 0}\n', "count must be a whole number"),
        (b'{"command": "read", "count": true}\n', "count must be a whole number"),
        (b'{"command": "hello", "pad": "' + b"x" * 5000 + b'"}\n', "at most 4096 bytes"),
    ],
)
def test_a_bad_request_gets_a_reason_and_the_server_goes_on(server, raw, error):
    running, _ = server
    (answer,) = ask(running.path, raw)
    assert answer["ok"] is False and error in answer["error"]
    (hello,) = ask(running.path, b'{"command": "hello"}\n')
    assert hello["ok"] is True and hello["station"] == "benanga-01"


def test_the_socket_is_for_the_service_group_only_and_removed_at_stop(tmp_path):
    running = ControlServer(tmp_path, "benanga-01", {}, ThreadHealth())
    (tmp_path / control.SOCKET_NAME).touch()  # not a socket: left by something else
    assert not running.start()  # never removes a file it did not make
    (tmp_path / control.SOCKET_NAME).unlink()
    assert running.start()
    assert stat.S_IMODE(running.path.stat().st_mode) == 0o660
    running.stop()
    assert not running.path.exists()


def test_a_reader_that_never_reads_never_holds_up_the_sampling_thread():
    feed = SampleFeed()
    stuck = feed.subscribe()
    for i in range(10_000):  # would block at FEED_QUEUE if publish waited
        feed.publish({"i": i})
    assert stuck.qsize() == FEED_QUEUE
    assert [stuck.get_nowait()["i"] for _ in range(FEED_QUEUE)] == list(range(FEED_QUEUE))
    with pytest.raises(queue.Empty):
        stuck.get_nowait()


@pytest.mark.slow
def test_read_without_a_daemon_opens_the_sensor_and_says_when_it_is_stable(tmp_path):
    steady = run_cli("read", "--config", calm_config(tmp_path, 0.002), "--count", "14")
    assert steady.returncode == 0, steady.stderr
    lines = steady.stdout.splitlines()
    assert lines[0] == "reading 14 samples from the sensor (simulated), no daemon running"
    assert len(lines) == 16 and "not used: acquiring" in lines[1]
    assert lines[-1].startswith("level 6.9") and ": stable (last 10 within" in lines[-1]
    noisy = run_cli("read", "--config", calm_config(tmp_path, 0.05), "--count", "14")
    assert noisy.returncode == 0, noisy.stderr
    assert "not stable yet (last 10 spread" in noisy.stdout.splitlines()[-1]


@pytest.mark.slow
def test_read_from_the_running_daemon_gives_its_samples_as_json(tmp_path):
    with simulated_daemon(tmp_path) as process:
        wait_for(lambda: daemon_status(tmp_path).get("samples"), 20, "the first sample")
        result = run_cli(
            "read", "--config", str(tmp_path / "config.toml"), "--count", "3", "--json"
        )
        samples_after = daemon_status(tmp_path)["samples"]
        human = run_cli("read", "--config", str(tmp_path / "config.toml"), "--count", "2")
        process.terminate()
        process.communicate(timeout=10)
    assert result.returncode == 0, result.stderr
    samples = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(samples) == 3
    for sample in samples:
        assert set(sample) >= {
            "time",
            "raw",
            "raw_unit",
            "temperature_c",
            "distance_m",
            "level_m",
            "ok",
            "reason",
        }
        assert sample["raw_unit"] == "m" and sample["time"].endswith("Z")
        if sample["ok"]:
            assert sample["level_m"] == pytest.approx(10.40 - sample["distance_m"], abs=0.001)
    assert samples_after >= 3  # they were the daemon's samples, taken while it ran
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith("reading 2 samples from the running daemon\n")


def test_maintenance_flags_readings_keeps_the_alarms_and_ends_by_itself(tmp_path):
    from agent.daemon import Daemon
    from agent.outbox import Outbox
    from tests.conftest import FakeClock, config_from
    from tests.test_daemon import ScriptedSensor

    config = config_from(
        {"filter": {"acquire_samples": 1, "window": 1, "max_rate_m_per_min": 100.0}}
    )
    clock = FakeClock(100.0)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    # 3.5 m below the sensor is 6.90 m (normal), then 2.0 m: 8.40 m (siaga) during the work.
    sensor = ScriptedSensor([3.5, 3.5, 2.0, 2.0, 3.5, 3.5])
    daemon = Daemon(config, sensor, lambda frame: None, clock=clock, outbox=outbox)
    try:
        flagged, states = [], []
        for step in range(6):
            if step == 1:
                daemon.maintenance_until = clock.now + 25.0  # ends by itself after 25 s
            daemon.sample_once()
            flagged.append(daemon.reading_record(daemon.last).get("maintenance", False))
            states.append(daemon.engine.state_name)
            clock.advance(10.0)
        assert outbox.flush()
        events = [r.body for r in outbox.next_batch(100) if r.type == "event"]
    finally:
        outbox.close()
    assert flagged == [False, True, True, True, False, False]
    assert states[2] == "siaga"  # the alarm logic kept running during maintenance
    maintenance = [e["active"] for e in events if e["kind"] == "maintenance"]
    assert maintenance == [True, False]


@pytest.mark.slow
def test_maintenance_on_and_off_through_the_running_daemon(tmp_path):
    config = calm_config(tmp_path)
    without = run_cli("maintenance", "--config", config, "on", "--minutes", "5")
    assert without.returncode == 1 and "no daemon running" in without.stderr
    bad = run_cli("maintenance", "--config", config, "on", "--minutes", "0")
    assert bad.returncode == 2 and "from 1 to 720" in bad.stderr
    with running_daemon(tmp_path / "config.toml") as process:
        wait_for(lambda: daemon_status(tmp_path).get("samples"), 20, "the first sample")
        on = run_cli("maintenance", "--config", config, "on", "--minutes", "5")
        assert on.returncode == 0 and "maintenance on until" in on.stdout, on.stderr
        wait_for(lambda: daemon_status(tmp_path).get("maintenance"), 10, "the flag in status")
        shown = run_cli("status", "--config", config)
        assert " MAINTENANCE until " in shown.stdout
        off = run_cli("maintenance", "--config", config, "off")
        assert off.returncode == 0, off.stderr
        wait_for(lambda: daemon_status(tmp_path).get("maintenance") is None, 10, "it to end")
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert "maintenance ON" in stderr and "maintenance ended" in stderr
    with sqlite3.connect(tmp_path / "state" / "outbox.sqlite") as outbox:
        rows = [
            (kind, json.loads(body))
            for kind, body in outbox.execute(
                "SELECT type, body FROM readings UNION ALL "
                "SELECT type, body FROM events ORDER BY 1 DESC"
            )
        ]
    assert any(body.get("maintenance") for kind, body in rows if kind == "reading")
    assert [
        body["active"] for kind, body in rows if kind == "event" and body["kind"] == "maintenance"
    ] == [True, False]
