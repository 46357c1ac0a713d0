"""Crash safety and isolation: kill -9 at random moments loses nothing and stores nothing
twice; a hanging upstream never delays the siren."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

from agent.config import UplinkConfig
from agent.daemon import Daemon
from agent.outbox import Outbox
from agent.outputs import GpioOutputs
from agent.receiver import ReferenceReceiver
from agent.uplink import Uploader
from tests.conftest import config_from, daemon_status, running_daemon, wait_for


TOKEN = "crash-test-token"
KILLS = 20


def crash_config(tmp_path: Path, url: str) -> Path:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    config = tmp_path / "config.toml"
    config.write_text(f"""
[sensor]
interval_s = 0.05
alarm_interval_s = 0.05
burst = 2
[sensor.simulated]
scenario = "flash-flood"
time_scale = 2000.0
[filter]
max_rate_m_per_min = 1000.0
[alarm]
off_delay_s = 3.0
[uplink]
url = "{url}"
token_file = "{token}"
batch_max = 20
heartbeat_s = 0.5
backoff_max_s = 0.2
[storage]
state_dir = "{tmp_path / 'state'}"
runtime_dir = "{tmp_path / 'run'}"
""", encoding="utf-8")
    return config


def test_kill_9_at_random_moments_loses_nothing_and_stores_nothing_twice(tmp_path):
    receiver = ReferenceReceiver(tmp_path / "receiver.sqlite", {"benanga-01": TOKEN}).start()
    config = crash_config(tmp_path, receiver.url)
    rng = random.Random(20261127)
    try:
        for _ in range(KILLS):
            with running_daemon(config, "--simulate", stderr=subprocess.DEVNULL) as process:
                time.sleep(rng.uniform(0.4, 1.5))
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            assert process.returncode == -signal.SIGKILL
        # One last clean run drains what the killed ones left behind.
        with running_daemon(config, "--simulate") as process:
            # The status is written as each reading is submitted, so "caught up" is a depth
            # of a record or two, not zero.
            wait_for(lambda: daemon_status(tmp_path).get("samples", 0) > 5
                     and (daemon_status(tmp_path)["uplink"] or {}).get("delivered", 0) > 0
                     and daemon_status(tmp_path)["outbox"]["depth"] <= 3, 60, "the backlog to drain")
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=10)
        # Whatever the last status did not see was committed at shutdown; drain it too.
        outbox = Outbox(tmp_path / "state" / "outbox.sqlite")
        uploader = Uploader(outbox, UplinkConfig(url=receiver.url,
                                                 token_file=str(tmp_path / "token")), "benanga-01")
        uploader.start()
        wait_for(lambda: outbox.stats()["depth"] == 0, 30, "the final drain")
        uploader.stop()
        epoch = outbox.epoch
        outbox.close()
        stored = receiver.stored()
        duplicates = receiver.duplicates
    finally:
        receiver.close()
    database = sqlite3.connect(tmp_path / "state" / "outbox.sqlite")
    assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    high_water = int(database.execute("SELECT value FROM meta WHERE key='high_water'").fetchone()[0])
    seqs = [seq for _, record_epoch, seq, _, _ in stored if record_epoch == epoch]
    # Every record ever committed (seq 1..high_water, assigned at commit) arrived, once.
    assert len(seqs) == len(set(seqs)) == len(stored)
    assert seqs == list(range(1, high_water + 1))
    types = {kind for *_, kind, _ in stored}
    assert {"reading", "heartbeat", "event"} <= types
    assert high_water > 200
    print(f"kill -9 x{KILLS}: {high_water} records, {duplicates} re-sent and deduplicated")


class LiveSensor:
    """A distance the test sets; read every sample."""

    value_kind, unit, unit_to_m = "distance", "m", 1.0

    def __init__(self, distance_m: float):
        self.distance_m = distance_m

    def read_burst(self, count):
        return [(self.distance_m, None)] * count

    def close(self):
        pass


def test_the_siren_follows_the_alarm_within_one_sample_while_upstream_hangs(tmp_path,
                                                                           mock_factory):
    receiver = ReferenceReceiver(tmp_path / "receiver.sqlite", {"benanga-01": TOKEN}).start()
    receiver.script.extend([("hang", 30.0)] * 5)        # every upload hangs for 30 s
    (tmp_path / "token").write_text(TOKEN)
    config = config_from({"sensor": {"interval_s": 0.2, "alarm_interval_s": 0.2},
                          "filter": {"acquire_samples": 1, "window": 1,
                                     "max_rate_m_per_min": 1000.0},
                          "uplink": {"url": receiver.url, "token_file": str(tmp_path / "token"),
                                     "read_timeout_s": 20.0}})
    outbox = Outbox(tmp_path / "outbox.sqlite")
    uploader = Uploader(outbox, config.uplink, "benanga-01")
    outputs = GpioOutputs(config.outputs, pin_factory=mock_factory)
    sensor = LiveSensor(3.5)                             # 6.90 m: normal
    daemon = Daemon(config, sensor, outputs.apply, outbox=outbox, uploader=uploader)
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,))
    try:
        uploader.start()
        runner.start()
        wait_for(lambda: receiver.requests >= 1, 5, "an upload to be hanging")
        samples_before = daemon.samples
        sensor.distance_m = 1.5                          # 8.90 m: awas
        flooded = time.monotonic()
        wait_for(lambda: mock_factory.pin(17).state, 2.0, "the siren")
        reaction = time.monotonic() - flooded
        assert daemon.engine.state_name == "awas"
        # One sampling period (0.2 s) plus the output thread's tick, with room for a slow VM;
        # a sample that waited for the hanging upload would take the 20 s read timeout.
        assert reaction < 1.0, f"the siren took {reaction:.2f} s while upstream hung"
        time.sleep(1.0)
        assert daemon.samples - samples_before >= 3      # sampling went on at its pace (5/s)
        assert receiver.requests == 1                    # still stuck in that one request
    finally:
        stop.set()
        runner.join(timeout=10)
        uploader.stop(timeout=1)
        outputs.close()
        outbox.close()
        receiver.script.clear()
        receiver.close()
