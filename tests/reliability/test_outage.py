"""The upstream gone for a simulated week (the radio link down, the city's server moved), at
one reading per 10 s, then back: the backlog stays within its cap, everything arrives, in
order, and the drain time is measured.

The week is stored by the daemon's own code (sampling, alarm engine, outbox writer) on a
virtual clock, so it takes seconds instead of a week; then the daemon process starts on that
state directory with the upstream still down, and the reference receiver process comes up at
the address it posts to."""

from __future__ import annotations

import time
from pathlib import Path

from agent.daemon import Daemon
from agent.outbox import Outbox
from agent.sensors.simulated import SimulatedSensor
from tests.conftest import (
    FakeClock,
    config_from,
    daemon_status,
    free_port,
    running_daemon,
    wait_for,
)
from tests.reliability.conftest import scale
from tests.reliability.harness import ReceiverProcess, gauge_config, ledger, queued, stop_daemon

WEEK_S = 7 * 24 * 3600
INTERVAL_S = 10.0


def store_while_upstream_is_down(state_dir: Path, seconds: float) -> dict:
    """Run the daemon's sampling path for `seconds` of virtual time, upstream unreachable."""
    config = config_from(
        {
            # The reservoir creeps up for 16 hours now and then: rate alarms, events in the backlog.
            "sensor": {
                "interval_s": INTERVAL_S,
                "alarm_interval_s": INTERVAL_S,
                "simulated": {"scenario": "slow-rise"},
            },
            "storage": {"state_dir": str(state_dir)},
        }
    )
    clock = FakeClock(1000.0)
    wall_at_start = time.time() - seconds
    outbox = Outbox(
        state_dir / "outbox.sqlite", config.uplink.max_backlog_mb, config.uplink.dead_letter_max
    )
    daemon = Daemon(
        config,
        SimulatedSensor(config, clock=clock),
        lambda *_: None,
        clock=clock,
        wall=lambda: wall_at_start + clock.now - 1000.0,
        outbox=outbox,
    )
    samples = int(seconds / INTERVAL_S)
    for _ in range(samples):
        clock.now += INTERVAL_S
        daemon.sample_once()
    assert outbox.flush(timeout=120)
    stats = outbox.stats()
    outbox.close()
    return {"samples": samples, **stats}


def test_a_week_without_upstream_then_back_everything_arrives_in_order(tmp_path, report):
    weeks = scale(1, 4)
    state_dir = tmp_path / "state"
    stored = store_while_upstream_is_down(state_dir, weeks * WEEK_S)
    size_mb = (state_dir / "outbox.sqlite").stat().st_size / 1e6
    # Within its cap (200 MB by default) with nothing dropped for room.
    assert stored["dropped"] == 0 and size_mb < 200
    assert stored["depth"] > stored["samples"]  # readings, heartbeats and events

    port = free_port()
    config = gauge_config(tmp_path, f"http://127.0.0.1:{port}/ingest", batch_max=500)
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log, running_daemon(config, "--simulate", stderr=log) as process:
        wait_for(
            lambda: (
                "connection failed"
                in ((daemon_status(tmp_path).get("uplink") or {}).get("last_error") or "")
            ),
            30,
            "the daemon to find the upstream down",
        )
        backlog = wait_for(
            lambda: (daemon_status(tmp_path)["outbox"] or {}).get("depth"),
            30,
            "the daemon to count its backlog",
        )
        assert backlog >= stored["depth"]
        with ReceiverProcess(tmp_path, port) as receiver:
            back = time.monotonic()
            first = wait_for(
                lambda: receiver.arrivals() and time.monotonic(),
                30,
                "the first delivery after the upstream came back",
            )
            wait_for(
                lambda: queued(daemon_status(tmp_path)) <= 5, 600, "the week's backlog to drain"
            )
            drained = time.monotonic()
            assert process.poll() is None
            stop_daemon(process, log_path)
            books = ledger(state_dir, receiver)
    assert books.lost == [] and books.dropped_for_backlog == 0 and books.dead_letters == []
    assert books.out_of_order() == []
    assert len(books.upstream) >= stored["depth"]
    drain_s = drained - back
    report(
        "upstream down for a week, then back",
        weeks,
        len(books.lost),
        records=stored["depth"],
        outbox_mb=round(size_mb, 1),
        first_delivery_after_s=round(first - back, 1),
        drain_s=round(drain_s, 1),
        records_per_s=round(backlog / drain_s),
    )
