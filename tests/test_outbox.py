"""The durable outbox: sequence numbers, ordering, backlog limits, a full disk."""

from __future__ import annotations

import sqlite3
import time

import pytest

from agent.outbox import EVENT, READING, Outbox


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def fill(box: Outbox, count: int, kind: str = READING, start: float = 1.7e9) -> None:
    for i in range(count):
        box.submit(kind, start + i, {"level_m": 7.0 + i / 1000, "ok": True})
    assert box.flush()


def test_records_get_increasing_sequence_numbers_and_survive_a_restart(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    fill(box, 5)
    epoch = box.epoch
    box.close()
    again = Outbox(tmp_path / "o.sqlite")
    try:
        assert again.epoch == epoch
        assert [r.seq for r in again.next_batch(10)] == [1, 2, 3, 4, 5]
        assert again.next_batch(10)[0].body == {"level_m": 7.0, "ok": True}
    finally:
        again.close()


def test_sequence_numbers_are_never_reused_even_after_everything_was_acknowledged(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    fill(box, 3)
    box.ack([r.seq for r in box.next_batch(10)])
    box.close()
    again = Outbox(tmp_path / "o.sqlite")
    try:
        fill(again, 1)
        assert [r.seq for r in again.next_batch(10)] == [4]
    finally:
        again.close()


def test_a_new_database_is_a_new_epoch(tmp_path):
    first, second = Outbox(tmp_path / "a.sqlite"), Outbox(tmp_path / "b.sqlite")
    try:
        assert first.epoch != second.epoch and len(first.epoch) == 32
    finally:
        first.close()
        second.close()


def test_alarm_events_go_before_the_backlog_of_readings(outbox):
    fill(outbox, 3)
    outbox.submit(EVENT, 1.8e9, {"kind": "level", "state": "awas"})
    assert outbox.flush()
    batch = outbox.next_batch(2)
    assert [(r.type, r.seq) for r in batch] == [(EVENT, 4), (READING, 1)]


def test_depth_counts_what_is_not_yet_acknowledged(outbox):
    fill(outbox, 10)
    outbox.ack([1, 2, 3])
    assert outbox.stats()["depth"] == 7


def test_a_full_backlog_drops_the_oldest_readings_never_events(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", max_backlog_mb=0.25)
    try:
        box.submit(EVENT, 1.7e9, {"kind": "level", "state": "siaga"})
        fill(box, 6000)
        stats = box.stats()
        assert stats["dropped"] > 0
        remaining = box.next_batch(100000)
        events = [r for r in remaining if r.type == EVENT]
        assert events[0].body == {"kind": "level", "state": "siaga"}  # kept
        assert any(r.body.get("kind") == "outbox" and r.body["dropped"] > 0 for r in events)
        readings = [r.seq for r in remaining if r.type == READING]
        assert readings == sorted(readings) and readings[0] > 2  # the oldest went
        assert stats["depth"] == len(remaining)
    finally:
        box.close()
    again = Outbox(tmp_path / "o.sqlite", max_backlog_mb=0.25)
    try:
        assert again.stats()["dropped"] == stats["dropped"]  # it persists
    finally:
        again.close()


def test_a_full_disk_holds_records_in_memory_and_writes_them_when_space_returns(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", max_page_count=12)
    try:
        fill(box, 2000)  # far more than 12 pages of 4 KiB hold
        stats = box.stats()
        assert stats["storage_error"] == "database or disk is full"
        assert stats["held_in_memory"] > 0
        box.max_page_count = None  # space again
        box.submit(READING, 1.8e9, {"level_m": 7.5, "ok": True})
        assert box.flush(timeout=15)
        assert box.stats()["storage_error"] is None
        seqs = [r.seq for r in box.next_batch(5000)]
        assert seqs == list(range(1, 2002))  # nothing lost, nothing out of order
    finally:
        box.close()


def test_an_acknowledgement_the_card_refuses_keeps_the_records_queued_and_is_a_storage_problem(
    outbox, caplog
):
    # A card the kernel remounted read-only (what ext4 does on an I/O error), seen by the
    # uploader's own connection: its DELETE fails. That is a storage problem, not a crash of
    # the uploader; the records stay and go again (upstream deduplicates them).
    fill(outbox, 3)
    batch = outbox.next_batch(10)
    outbox._connection().execute("PRAGMA query_only = ON")
    outbox.ack([record.seq for record in batch], batch[0].epoch)
    outbox.ack([record.seq for record in batch], batch[0].epoch)
    assert "readonly" in outbox.stats()["storage_error"]
    assert [r.seq for r in outbox.next_batch(10)] == [1, 2, 3]
    assert sum("cannot delete acknowledged" in r.message for r in caplog.records) == 1  # once
    outbox._connection().execute("PRAGMA query_only = OFF")
    outbox.ack([1, 2, 3], batch[0].epoch)
    assert outbox.next_batch(10) == [] and outbox.stats()["depth"] == 0


def test_dead_letters_are_capped_and_counted(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", dead_letter_max=3)
    try:
        fill(box, 5)
        for record in box.next_batch(5):
            box.dead_letter(record, 422, "level_m must be a number")
        assert box.stats()["dead_lettered"] == 5 and box.stats()["depth"] == 0
        kept = (
            sqlite3.connect(tmp_path / "o.sqlite")
            .execute("SELECT seq FROM dead_letters ORDER BY seq")
            .fetchall()
        )
        assert kept == [(3,), (4,), (5,)]
    finally:
        box.close()


def test_close_commits_everything_submitted(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    for i in range(100):
        box.submit(READING, 1.7e9 + i, {"ok": True})
    box.close()
    rows = sqlite3.connect(tmp_path / "o.sqlite").execute("SELECT COUNT(*) FROM readings")
    assert rows.fetchone() == (100,)


def test_committed_records_are_in_the_write_ahead_log_with_full_sync(outbox):
    connection = sqlite3.connect(outbox.path)
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # synchronous is per connection: ask the outbox's own.
    assert outbox._connection().execute("PRAGMA synchronous").fetchone() == (2,)  # FULL


@pytest.mark.slow
def test_a_damaged_outbox_is_moved_aside_and_a_new_epoch_begins(tmp_path, caplog):
    from agent.main import open_outbox
    from tests.conftest import config_from

    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.sqlite").write_bytes(b"this is not a database, the card lost it" * 100)
    config = config_from({"storage": {"state_dir": str(state)}})
    box, problem = open_outbox(config)
    try:
        assert problem is None and box is not None
        fill(box, 1)
        assert [r.seq for r in box.next_batch(5)] == [1]
    finally:
        box.close()
    aside = [p.name for p in state.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1 and "is damaged" in caplog.text


def test_an_unwritable_state_directory_holds_records_until_the_outbox_can_be_opened(
    tmp_path, monkeypatch
):
    """The old daemon ran without an outbox for its whole run when the card was full or
    read-only at start: zero records upstream even after space returned."""
    import agent.outbox
    from agent.main import open_outbox
    from tests.conftest import config_from

    monkeypatch.setattr(agent.outbox, "RETRY_WRITE_S", 0.2)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    box, problem = open_outbox(config_from({"storage": {"state_dir": str(blocker / "state")}}))
    try:
        assert problem is None and box.storage_error.startswith("cannot open:")
        fill(box, 3)
        assert box.flush(timeout=5) and box.stats()["held_in_memory"] == 3
        assert box.next_batch(10) == []  # nothing to send before it is open
        blocker.unlink()  # the technician frees the card
        (blocker / "state").mkdir(parents=True)
        deadline = time.monotonic() + 10
        while box.stats()["held_in_memory"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert box.storage_error is None and box.stats()["depth"] == 3
        assert [record.seq for record in box.next_batch(10)] == [1, 2, 3]
    finally:
        box.close()


@pytest.mark.slow
def test_a_damaged_meta_value_moves_the_file_aside_and_its_records_are_sent_under_their_epoch(
    tmp_path, caplog
):
    """A damaged value in meta crashed the old daemon at every start (a restart loop, no
    siren), and the readable records of a file moved aside were never sent."""
    from agent.main import open_outbox
    from agent.receiver import ReferenceReceiver
    from agent.salvage import salvage_uploaders
    from agent.supervision import ThreadHealth
    from tests.conftest import config_from

    state = tmp_path / "state"
    old = Outbox(state / "outbox.sqlite")
    fill(old, 6)
    old_epoch = old.epoch
    old.close()
    connection = sqlite3.connect(state / "outbox.sqlite")
    connection.execute("UPDATE meta SET value = 'x9' WHERE key = 'high_water'")
    connection.commit()
    connection.close()
    token = tmp_path / "token"
    token.write_text("salvage-token")
    receiver = ReferenceReceiver(
        tmp_path / "receiver.sqlite", {"benanga-01": "salvage-token"}
    ).start()
    config = config_from(
        {
            "storage": {"state_dir": str(state)},
            "uplink": {"url": receiver.url, "token_file": str(token)},
        }
    )
    health = ThreadHealth()
    box, problem = open_outbox(config, health)
    drains = salvage_uploaders(config, health)
    try:
        assert problem is None and box.epoch != old_epoch
        assert len(drains) == 1 and drains[0][0].epoch == old_epoch
        deadline = time.monotonic() + 15
        while drains[0][0].stats()["depth"] != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        stored = [(epoch, seq) for _, epoch, seq, _, _ in receiver.stored()]
    finally:
        for salvaged, uploader in drains:
            uploader.stop()
            salvaged.close()
        box.close()
        receiver.close()
    assert stored == [(old_epoch, seq) for seq in range(1, 7)]
    assert "is damaged (meta high_water 'x9' is not a count)" in caplog.text


def test_a_second_daemon_on_the_same_state_directory_is_refused_with_the_holders_pid(tmp_path):
    import os

    from agent.statelock import StateDirectoryBusy, StateLock

    first = StateLock(tmp_path).acquire()
    try:
        with pytest.raises(StateDirectoryBusy) as refused:
            StateLock(tmp_path).acquire()
        assert f"another gauge-agent (pid {os.getpid()}) is running on {tmp_path}" in str(
            refused.value
        )
    finally:
        first.release()
    StateLock(tmp_path).acquire().release()  # free again once the first has gone
