"""The card: a damaged outbox file, a full card at start and while running, two daemons on one
state directory. The daemon runs as a process; the receiver too."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.outbox import EVENT, READING, Outbox, Record
from agent.wire import native_record
from tests.conftest import ROOT, daemon_status, running_daemon, wait_for
from tests.reliability.conftest import scale
from tests.reliability.harness import (
    STATION,
    ReceiverProcess,
    gauge_config,
    ledger,
    queued,
    stop_daemon,
)

# -- a damaged outbox ----------------------------------------------------------------------


def write_outbox(path: Path, rng: random.Random) -> dict[int, dict]:
    """An outbox as a daemon leaves it: readings and a few events committed, the oldest
    delivered (deleted). Returns the records still queued, as upstream will see them, by
    seq."""
    box = Outbox(path)
    for n in range(rng.randint(150, 600)):
        if rng.random() < 0.03:
            box.submit(EVENT, 1.79e9 + n, {"kind": "level", "from": "normal", "to": "waspada"})
        else:
            box.submit(
                READING,
                1.79e9 + n,
                {
                    "level_m": round(6.9 + rng.random() / 10, 4),
                    "ok": True,
                    "state": "normal",
                    "n": n,
                },
            )
    assert box.flush()
    delivered = [record.seq for record in box.next_batch(rng.randint(0, 100))]
    box.ack(delivered)
    queued = {record.seq: native_record(record) for record in box.next_batch(10000)}
    box.close()
    return queued


def damage(path: Path, rng: random.Random) -> list[tuple[int, int]]:
    """Random bytes at random offsets: what a failing SD card does."""
    size = path.stat().st_size
    spots = []
    with open(path, "r+b") as file:
        for _ in range(rng.randint(1, 6)):
            offset, length = rng.randrange(size), rng.randint(1, 256)
            file.seek(offset)
            file.write(rng.randbytes(min(length, size - offset)))
            spots.append((offset, length))
    return spots


def records_by_key(path: Path, seqs, table: str) -> dict[int, dict]:
    """What an independent reader gets back, row by row by key, from a copy of the damaged
    file, as upstream will see it: seq -> record (rows that cannot be read are left out)."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "copy.sqlite"
        shutil.copyfile(path, copy)
        found = {}
        try:
            database = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        except sqlite3.Error:
            return found
        with contextlib.closing(database):
            for seq in seqs:
                try:
                    row = database.execute(
                        f"SELECT type, time, body FROM {table} WHERE seq = ?", (seq,)
                    ).fetchone()
                    if row is not None:
                        found[seq] = native_record(Record(seq, row[0], row[1], json.loads(row[2])))
                except (sqlite3.Error, ValueError, TypeError):
                    pass
    return found


def readable_records(path: Path, queued: dict[int, dict]) -> set[int]:
    """The queued records an independent reader still gets back intact: what the daemon must
    not lose."""
    found = {}
    for table in ("events", "readings"):
        found.update(
            records_by_key(
                path,
                [
                    seq
                    for seq, record in queued.items()
                    if (record["type"] == EVENT) == (table == "events")
                ],
                table,
            )
        )
    return {seq for seq, record in found.items() if record == queued[seq]}


def arrived_intact(receiver: ReceiverProcess, queued: dict[int, dict]) -> set[int]:
    with sqlite3.connect(receiver.db) as database:
        rows = database.execute(
            "SELECT seq, body FROM records WHERE station = ?", (STATION,)
        ).fetchall()
    return {seq for seq, body in rows if seq in queued and json.loads(body) == queued[seq]}


def test_a_damaged_outbox_file_loses_nothing_that_can_still_be_read(tmp_path, report):
    trials = scale(20, 100)
    rng = random.Random(20261130)
    outcomes = {"replaced_at_start": 0, "replaced_while_running": 0, "kept": 0}
    readable_total = arrived_total = 0
    for trial in range(trials):
        trial_dir = tmp_path / f"trial-{trial}"
        trial_dir.mkdir()
        path = trial_dir / "state" / "outbox.sqlite"
        path.parent.mkdir()
        queued = write_outbox(path, rng)
        spots = damage(path, rng)
        readable = readable_records(path, queued)
        with ReceiverProcess(trial_dir) as receiver:
            config = gauge_config(trial_dir, receiver.url, batch_max=100)
            log_path = trial_dir / "daemon.log"
            with (
                open(log_path, "w") as log,
                running_daemon(config, "--simulate", stderr=log) as process,
            ):
                wait_for(lambda: daemon_status(trial_dir).get("samples"), 20, "the daemon")
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and process.poll() is None:
                    missing = readable - arrived_intact(receiver, queued)
                    if not missing:
                        break
                    time.sleep(0.2)
                assert process.poll() is None, log_path.read_text()[-3000:]
                status = daemon_status(trial_dir)
                stop_daemon(process, log_path)
            arrived = arrived_intact(receiver, queued)
        missing = sorted(readable - arrived)
        assert not missing, (
            f"trial {trial}: damage at {spots}: {len(missing)} readable"
            f" records never arrived: {missing[:20]}\n" + log_path.read_text()[-3000:]
        )
        assert "internal" not in status["faults"], status["faults"]
        log_text = log_path.read_text()
        if " is damaged (" not in log_text:
            outcomes["kept"] += 1  # the damage hit free pages, or only row contents
        elif log_text.index(" is damaged (") < log_text.index(" started: "):
            outcomes["replaced_at_start"] += 1
        else:
            outcomes["replaced_while_running"] += 1
        readable_total += len(readable)
        arrived_total += len(arrived)
    report(
        "damaged outbox file",
        trials,
        0,
        readable_records=readable_total,
        arrived=arrived_total,
        **outcomes,
    )


def intact_by_key(path: Path) -> tuple[str, dict[int, dict]]:
    """The file's epoch, and every reading an independent reader gets back by key."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as database:
        epoch = database.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
    return epoch, records_by_key(path, range(1, 2000), "readings")


def test_nothing_is_acknowledged_into_a_damaged_file_before_it_is_checked(tmp_path):
    """Trial 30 of the soak (tests/data/outbox-damaged-trial-30.sqlite, 78 random bytes in one
    page): the uploader delivered and acknowledged a batch before anything noticed the damage,
    and the DELETE on the damaged page destroyed four intact rows next to it (seq 199-202),
    which then never arrived. Now the writer thread runs PRAGMA quick_check first."""
    state = tmp_path / "state"
    state.mkdir()
    shutil.copyfile(
        ROOT / "tests" / "data" / "outbox-damaged-trial-30.sqlite", state / "outbox.sqlite"
    )
    epoch, readable = intact_by_key(state / "outbox.sqlite")
    assert {199, 200, 201, 202} <= set(readable)

    with ReceiverProcess(tmp_path) as receiver:

        def arrived() -> dict[int, dict]:
            with contextlib.closing(sqlite3.connect(receiver.db)) as database:
                return {
                    seq: json.loads(body)
                    for seq, body in database.execute(
                        "SELECT seq, body FROM records WHERE station = ? AND epoch = ?",
                        (STATION, epoch),
                    )
                }

        config = gauge_config(tmp_path, receiver.url, batch_max=100)
        log_path = tmp_path / "daemon.log"
        with (
            open(log_path, "w") as log,
            running_daemon(config, "--simulate", stderr=log) as process,
        ):
            wait_for(lambda: set(readable) <= set(arrived()), 30, "every readable reading")
            stop_daemon(process, log_path)
        got = arrived()
    assert all(got[seq] == record for seq, record in readable.items())


# -- a full card -----------------------------------------------------------------------------


@contextlib.contextmanager
def small_card(mount_point: Path, size: str = "2m"):
    """A tmpfs of `size` to fill: the card. Needs root (CI and the container tests run as
    root); skipped, saying so, elsewhere."""
    mount_point.mkdir()
    mounted = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={size},mode=0755",
            "gauge-test-card",
            str(mount_point),
        ],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(card: Path) -> Path:
    """Write until the card refuses another byte."""
    filler = card / "filler"
    with open(filler, "wb", buffering=0) as file:
        for block in (65536, 4096, 512, 1):
            try:
                while True:
                    file.write(b"\0" * block)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
    return filler


def faults(tmp_path: Path) -> list[str]:
    return daemon_status(tmp_path).get("faults", [])


@pytest.mark.parametrize("when", ["at start", "while running"])
def test_a_full_card_loses_nothing_keeps_the_alarm_and_recovers_when_space_returns(
    tmp_path, when, report
):
    with small_card(tmp_path / "card") as card, ReceiverProcess(tmp_path) as receiver:
        state = card / "state"
        state.mkdir()
        config = gauge_config(
            tmp_path, receiver.url, scenario="flash-flood", time_scale=200, extra=""
        )
        text = config.read_text().replace(str(tmp_path / "state"), str(state))
        config.write_text(text)
        if when == "at start":
            filler = fill(card)
        log_path = tmp_path / "daemon.log"
        with (
            open(log_path, "w") as log,
            running_daemon(config, "--simulate", stderr=log) as process,
        ):
            wait_for(lambda: daemon_status(tmp_path).get("samples"), 20, "the daemon")
            if when == "while running":
                wait_for(lambda: receiver.arrivals(), 20, "the first delivery")
                filler = fill(card)
            wait_for(lambda: "storage" in faults(tmp_path), 20, "the storage fault")
            full_since = daemon_status(tmp_path)
            # The flood rises while the card is full: the alarm does not need the card. (The
            # simulated flood starts above Waspada; Siaga comes only later.)
            assert full_since["warning"] not in ("siaga", "awas")
            wait_for(
                lambda: daemon_status(tmp_path)["warning"] in ("siaga", "awas"),
                30,
                "a higher warning while the card is full",
            )
            status = daemon_status(tmp_path)
            assert status["samples"] > full_since["samples"] and process.poll() is None
            assert "storage" in status["faults"]
            held = status["outbox"]["held_in_memory"]
            assert held > 0, status["outbox"]
            filler.unlink()  # the technician makes room
            wait_for(
                lambda: (
                    "storage" not in faults(tmp_path)
                    and daemon_status(tmp_path)["outbox"]["held_in_memory"] == 0
                ),
                30,
                "the outbox to write again",
            )
            wait_for(lambda: queued(daemon_status(tmp_path)) <= 3, 30, "the backlog to drain")
            final = daemon_status(tmp_path)
            stop_daemon(process, log_path)
        books = ledger(state, receiver)
    assert books.lost == [] and books.dead_letters == [] and books.out_of_order() == []
    assert final["outbox"]["dropped"] == 0  # nothing fell out of the memory ring
    assert "internal" not in log_path.read_text()
    report(f"full card {when}", 1, len(books.lost), held_in_memory=held, records=books.last)


# -- two daemons -----------------------------------------------------------------------------


def test_a_second_daemon_on_the_same_state_directory_refuses_and_the_first_loses_nothing(
    tmp_path, report
):
    with ReceiverProcess(tmp_path) as receiver:
        config = gauge_config(tmp_path, receiver.url)
        log_path = tmp_path / "daemon.log"
        with open(log_path, "w") as log, running_daemon(config, "--simulate", stderr=log) as first:
            wait_for(lambda: daemon_status(tmp_path).get("samples"), 20, "the first daemon")
            second = subprocess.run(
                [sys.executable, "-m", "agent", "run", "--config", str(config), "--simulate"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
            )
            assert second.returncode == 1, second.stderr
            assert f"another gauge-agent (pid {first.pid}) is running on" in second.stderr
            samples = daemon_status(tmp_path)["samples"]
            wait_for(
                lambda: daemon_status(tmp_path)["samples"] > samples + 5,
                10,
                "the first daemon to carry on",
            )
            assert daemon_status(tmp_path)["pid"] == first.pid
            wait_for(
                lambda: queued(daemon_status(tmp_path)) <= 3,
                30,
                "the first daemon's backlog to drain",
            )
            stop_daemon(first, log_path)
        books = ledger(tmp_path / "state", receiver)
    assert books.lost == [] and books.out_of_order() == []
    report(
        "second daemon on the same state directory",
        1,
        len(books.lost),
        second_exit_code=second.returncode,
        records=books.last,
    )
