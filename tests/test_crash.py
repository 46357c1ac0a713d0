"""Isolation: a hanging upstream never delays the siren. (kill -9 at random moments is in
tests/reliability/test_kill9.py.)"""

from __future__ import annotations

import threading

import pytest

from agent.daemon import Daemon
from agent.outbox import Outbox
from agent.outputs import GpioOutputs
from agent.receiver import ReferenceReceiver
from agent.uplink import Uploader
from tests.conftest import config_from, wait_for
from tests.sensors import LiveSensor

TOKEN = "crash-test-token"


@pytest.mark.slow
def test_the_siren_follows_the_alarm_within_one_sample_while_upstream_hangs(tmp_path, mock_factory):
    receiver = ReferenceReceiver(tmp_path / "receiver.sqlite", {"benanga-01": TOKEN}).start()
    receiver.script.extend([("hang", 30.0)] * 5)  # every upload hangs for 30 s
    (tmp_path / "token").write_text(TOKEN)
    config = config_from(
        {
            "sensor": {"interval_s": 0.2, "alarm_interval_s": 0.2},
            "filter": {"acquire_samples": 1, "window": 1, "max_rate_m_per_min": 1000.0},
            "uplink": {
                "url": receiver.url,
                "token_file": str(tmp_path / "token"),
                "read_timeout_s": 20.0,
                "batch_s": 0.0,
            },
        }
    )
    outbox = Outbox(tmp_path / "outbox.sqlite")
    uploader = Uploader(outbox, config.uplink, "benanga-01")
    outputs = GpioOutputs(config.outputs, pin_factory=mock_factory)
    sensor = LiveSensor(3.5)  # 6.90 m: normal
    daemon = Daemon(config, sensor, outputs.apply, outbox=outbox, uploader=uploader)
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,))
    try:
        uploader.start()
        runner.start()
        wait_for(lambda: receiver.requests >= 1, 5, "an upload to be hanging")
        samples_before = daemon.samples
        sensor.distance_m = 1.5  # 8.90 m: awas
        # A sample that waited for the hanging upload would take the 20 s read timeout.
        wait_for(lambda: mock_factory.pin(17).state, 10.0, "the siren")
        # The siren came with the sample that read the flood (or one already under way, or one
        # more while wait_for polled).
        assert daemon.samples - samples_before <= 3
        assert daemon.engine.state_name == "awas"
        wait_for(lambda: daemon.samples - samples_before >= 8, 10, "sampling to go on")
        assert receiver.requests == 1  # still stuck in that one request
    finally:
        stop.set()
        runner.join(timeout=10)
        uploader.stop(timeout=1)
        outputs.close()
        outbox.close()
        receiver.script.clear()
        receiver.close()
