"""`gauge-agent queue status` and `queue export`: the outbox read beside a writer, exported
to CSV with the upstream format's columns, nothing deleted."""

from __future__ import annotations

import csv

import pytest

from agent.outbox import EVENT, READING, Outbox, Record
from tests.conftest import calm_config, daemon_status, run_cli, running_daemon, wait_for


def stored_outbox(tmp_path) -> Outbox:
    box = Outbox(tmp_path / "state" / "outbox.sqlite")
    for i in range(5):
        box.submit(READING, 1.795e9 + 10 * i, {"level_m": 7.0 + i / 100, "ok": True})
    box.submit(
        EVENT,
        1.795e9 + 25,
        {"kind": "level", "state": "waspada", "previous": "normal", "level_m": 7.52},
    )
    assert box.flush()
    box.dead_letter(
        Record(99, READING, 1.795e9 - 3600, {"level_m": "NaN?", "ok": False}),
        422,
        "records[0].level_m must be a number",
    )
    return box


def test_export_writes_every_waiting_record_and_the_dead_letters_and_deletes_nothing(tmp_path):
    config = calm_config(tmp_path)
    box = stored_outbox(tmp_path)  # open: the daemon's writer is beside the export
    try:
        out = tmp_path / "usb" / "benanga.csv"
        out.parent.mkdir()
        result = run_cli("queue", "--config", config, "export", "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert "6 records waiting for upstream and 1 dead letters" in result.stdout
        with open(out, newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert list(rows[0])[:6] == ["station", "epoch", "seq", "type", "time", "queue"]
        assert [row["type"] for row in rows].count("reading") == 6  # 5 waiting + 1 dead
        event = next(row for row in rows if row["type"] == "event")
        assert (event["kind"], event["state"], event["time"]) == (
            "level",
            "waspada",
            "2026-11-18T11:07:05Z",
        )
        dead = next(row for row in rows if row["queue"] == "dead_letter")
        assert dead["refused_status"] == "422" and "must be a number" in dead["refused_reason"]
        assert {row["epoch"] for row in rows} == {box.epoch}
        assert box.stats()["depth"] == 6  # nothing deleted

        since = run_cli(
            "queue",
            "--config",
            config,
            "export",
            "--out",
            str(out),
            "--since",
            "2026-11-18T11:07:02Z",
        )
        assert since.returncode == 0, since.stderr
        with open(out, newline="") as handle:
            assert [row["seq"] for row in csv.DictReader(handle)] == ["4", "5", "6"]
        status = run_cli("queue", "--config", config, "status")
        assert "events: 1, 2026-11-18T11:07:05Z" in status.stdout
        assert "readings: 5, 2026-11-18T11:06:40Z to 2026-11-18T11:07:20Z" in status.stdout
        assert "1 refused: HTTP 422, records[0].level_m must be a number" in status.stdout
    finally:
        box.close()


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01"])
def test_a_since_that_is_not_a_time_is_a_usage_error(tmp_path, since):
    result = run_cli(
        "queue",
        "--config",
        calm_config(tmp_path),
        "export",
        "--out",
        str(tmp_path / "x.csv"),
        "--since",
        since,
    )
    assert result.returncode == 2 and "is not a time" in result.stderr


def test_nothing_stored_yet_is_said_plainly(tmp_path):
    config = calm_config(tmp_path)
    assert "nothing has been stored yet" in run_cli("queue", "--config", config, "status").stdout
    export = run_cli("queue", "--config", config, "export", "--out", str(tmp_path / "x.csv"))
    assert export.returncode == 1 and "nothing to export" in export.stderr


@pytest.mark.slow
def test_export_beside_a_running_daemon_that_keeps_sampling(tmp_path):
    config = calm_config(tmp_path)
    with running_daemon(tmp_path / "config.toml") as daemon:
        wait_for(lambda: (daemon_status(tmp_path).get("samples") or 0) >= 5, 20, "samples")
        out = tmp_path / "export.csv"
        result = run_cli("queue", "--config", config, "export", "--out", str(out))
        before = daemon_status(tmp_path)["samples"]
        wait_for(lambda: daemon_status(tmp_path)["samples"] > before + 2, 10, "more samples")
        daemon.terminate()
        daemon.communicate(timeout=10)
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len([row for row in rows if row["type"] == "reading"]) >= 5


def test_dead_letters_go_back_in_the_queue_under_their_own_seq(tmp_path):
    box = stored_outbox(tmp_path)
    try:
        assert box.stats()["depth"] == 6
        assert box.retry_dead_letters() == 1
        assert box.stats()["depth"] == 7
        batch = box.next_batch(10)
        assert 99 in [record.seq for record in batch]
        assert next(r for r in batch if r.seq == 99).body == {"level_m": "NaN?", "ok": False}
        assert box.retry_dead_letters() == 0  # nothing left aside
    finally:
        box.close()


@pytest.mark.slow
def test_retry_dead_letters_through_the_running_daemon(tmp_path):
    config = calm_config(tmp_path)
    stored_outbox(tmp_path).close()  # a dead letter from before, on the card
    refused = run_cli("queue", "--config", config, "retry-dead-letters")
    assert refused.returncode == 1 and "no daemon running" in refused.stderr
    with running_daemon(tmp_path / "config.toml") as daemon:
        wait_for(lambda: daemon_status(tmp_path).get("samples"), 20, "the first sample")
        wait_for(
            lambda: (daemon_status(tmp_path).get("outbox") or {}).get("depth") is not None,
            20,
            "the outbox to be checked",
        )
        retried = run_cli("queue", "--config", config, "retry-dead-letters")
        status = run_cli("queue", "--config", config, "status")
        daemon.terminate()
        daemon.communicate(timeout=10)
    assert retried.returncode == 0, retried.stderr
    assert "1 dead letters are back in the queue" in retried.stdout
    assert "dead letters: 0" in status.stdout
