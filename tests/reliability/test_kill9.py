"""kill -9 at random moments over a simulated flood, again and again: nothing committed is
lost, nothing is stored twice upstream, and each new process takes up the warning the killed
one was showing."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from agent.config import UplinkConfig
from agent.outbox import Outbox
from agent.receiver import ReferenceReceiver
from agent.uplink import Uploader
from tests.conftest import daemon_status, running_daemon, wait_for
from tests.reliability.conftest import scale
from tests.reliability.harness import STATION, TOKEN, gauge_config, queued

ORDER = ["normal", "waspada", "siaga", "awas"]


def crash_config(tmp_path: Path, url: str) -> Path:
    """The flash flood, fast: a kill lands in every phase of it."""
    return gauge_config(
        tmp_path,
        url,
        scenario="flash-flood",
        time_scale=2000.0,
        batch_max=20,
        interval_s=0.05,
        backoff_max_s=0.2,
        extra="[alarm]\noff_delay_s = 3.0",
    )


def first_status_of(tmp_path: Path, pid: int) -> dict:
    return wait_for(
        lambda: (lambda s: s if s.get("pid") == pid else None)(daemon_status(tmp_path)),
        20,
        f"the first status of pid {pid}",
    )


def test_kill_9_at_random_moments_loses_nothing_stores_nothing_twice_and_resumes_the_alarm(
    tmp_path, report
):
    kills = scale(50, 200)
    receiver = ReferenceReceiver(tmp_path / "receiver.sqlite", {STATION: TOKEN}).start()
    config = crash_config(tmp_path, receiver.url)
    rng = random.Random(20261127)
    shown_before_kill: str | None = None
    resumed = warned_at_kill = 0
    try:
        for _ in range(kills):
            with running_daemon(config, "--simulate", stderr=subprocess.DEVNULL) as process:
                first = first_status_of(tmp_path, process.pid)
                if shown_before_kill not in (None, "normal"):
                    # The killed process showed a warning: this one starts with it.
                    assert ORDER.index(first["warning"]) >= ORDER.index(shown_before_kill), (
                        shown_before_kill,
                        first["warning"],
                    )
                    resumed += 1
                time.sleep(rng.uniform(0.3, 1.5))
                shown_before_kill = daemon_status(tmp_path).get("warning")
                warned_at_kill += shown_before_kill != "normal"
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            assert process.returncode == -signal.SIGKILL
        # One last clean run drains what the killed ones left behind.
        with running_daemon(config, "--simulate") as process:
            wait_for(
                lambda: (
                    daemon_status(tmp_path).get("samples", 0) > 5
                    and (daemon_status(tmp_path)["uplink"] or {}).get("delivered", 0) > 0
                    and queued(daemon_status(tmp_path)) <= 3
                ),
                60,
                "the backlog to drain",
            )
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=10)
        outbox = Outbox(tmp_path / "state" / "outbox.sqlite")
        uploader = Uploader(
            outbox,
            UplinkConfig(url=receiver.url, batch_s=0.0, token_file=str(tmp_path / "token")),
            STATION,
        )
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
    high_water = int(
        database.execute("SELECT value FROM meta WHERE key='high_water'").fetchone()[0]
    )
    seqs = [seq for _, record_epoch, seq, _, _ in stored if record_epoch == epoch]
    # Every record ever committed (seq 1..high_water, assigned at commit) arrived, once.
    assert len(seqs) == len(set(seqs)) == len(stored)
    assert seqs == list(range(1, high_water + 1))
    assert {"reading", "heartbeat", "event"} <= {kind for *_, kind, _ in stored}
    assert warned_at_kill > 0 and resumed > 0
    report(
        "kill -9 during a flood",
        kills,
        0,
        records=high_water,
        resent_deduplicated=duplicates,
        killed_while_warning=warned_at_kill,
        warning_resumed=resumed,
    )
