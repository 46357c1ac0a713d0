"""The outbox: every reading, event and heartbeat, kept on disk until upstream has it.

SQLite in WAL mode with `synchronous=FULL`: a record is on the card before it counts as taken,
and a crash or power cut at any moment loses nothing committed.

- The sampling thread only `submit()`s (a queue put that never blocks); a writer thread
  commits in order, several records per transaction when they come together. The alarm path
  never waits for the card.
- `(station, epoch, seq)` is unique for ever: `epoch` is a random id made with the database,
  `seq` is assigned at commit and never reused, also after everything was acknowledged and
  deleted (a high-water mark is kept with every deletion).
- Events live in their own table and go upstream first; when the database is over
  `uplink.max_backlog_mb` the oldest *readings* are dropped (never events), counted in a
  persistent `dropped` counter, and an event says so.
- A full disk (or any write failure) keeps records in a bounded ring in memory, reports
  `storage_error` (the daemon raises the `storage` fault; the siren is not affected), and the
  writer tries again until the card takes them. That includes opening the database: a card
  that is full or read-only at start-up is tried again until it can be opened.
- Nothing that is not finite reaches the database as a number (a transmitter answering NaN
  gives null); a row that cannot be decoded any more is moved to the dead letters with the
  reason, and never blocks the queue. Meta values are checked when the file is opened: a
  damaged one makes the file "damaged" (moved aside by the daemon, a new epoch started).
- The writer runs supervised (agent.supervision): an unexpected error is the `internal` fault,
  and the writer carries on.
- Every operation is an indexed range or key lookup: the cost is the same with 1,000,000 rows
  as with none.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import re
import sqlite3
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from agent.supervision import LoopThread, ThreadHealth

log = logging.getLogger("gauge-agent")

EVENT = "event"
READING = "reading"
HEARTBEAT = "heartbeat"
RECORD_TYPES = (READING, EVENT, HEARTBEAT)
MEMORY_RING = 20000          # records kept in memory while the card refuses them
# A WAL frame is a page plus a 24-byte header. With 4 KiB pages every frame straddles two 4 KiB
# blocks of the card, so each durable reading writes 8 KiB; with 1 KiB pages a frame usually
# fits in one block (measured by scripts/bench: bytes written per durable reading).
PAGE_SIZE = 1024
BACKLOG_CHECK_EVERY = 64     # rows written between two looks at the database size
RETRY_WRITE_S = 5.0
DROP_FRACTION = 0.01         # readings dropped at a time when the backlog is full

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, type TEXT NOT NULL,
                                   time REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS readings (seq INTEGER PRIMARY KEY, type TEXT NOT NULL,
                                     time REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (seq INTEGER PRIMARY KEY, type TEXT NOT NULL,
                                         time REAL NOT NULL, body TEXT NOT NULL,
                                         status INTEGER, reason TEXT, dead_at REAL NOT NULL);
"""


def finite(value):
    """`value` with every number that is not finite (NaN, infinity) replaced by None, and
    anything JSON cannot hold turned into text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def encode_body(body: dict) -> str:
    try:
        return json.dumps(body, allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(finite(body), allow_nan=False)


class DamagedOutbox(sqlite3.DatabaseError):
    """The file opens but what it holds cannot be trusted (a damaged meta value)."""


@dataclass
class Record:
    seq: int
    type: str
    time: float          # epoch seconds (wall clock when it was taken)
    body: dict           # the type's own fields


class Outbox:
    def __init__(self, path: Path, max_backlog_mb: float = 200.0, dead_letter_max: int = 10000,
                 max_page_count: int | None = None, health: ThreadHealth | None = None):
        self.path = Path(path)
        self.max_backlog_bytes = int(max_backlog_mb * 1024 * 1024)
        self.dead_letter_max = dead_letter_max
        self.max_page_count = max_page_count  # tests: make the database "full" on purpose
        self._lock = threading.Lock()
        self._local = threading.local()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._ring: deque[tuple[str, float, dict]] = deque()
        self.memory_dropped = 0
        self.storage_error: str | None = None
        self.committed = threading.Condition(self._lock)
        self.epoch: str | None = None     # None until the database could be opened
        self._next_seq = 1
        self._depth = 0
        self._pending = 0
        self._rows_since_check = BACKLOG_CHECK_EVERY  # look at the size on the first commit
        self._dropped = 0
        self._dead_lettered = 0
        self._running = True
        self._stopped = threading.Event()
        self._next_open_attempt = 0.0
        try:
            self._open()
        except DamagedOutbox:
            raise
        except (sqlite3.OperationalError, OSError) as error:
            # A full or read-only card, a missing mount: records wait in memory and the writer
            # tries again (the daemon shows the `storage` fault meanwhile).
            self._cannot_open(error)
        self._writer = LoopThread("outbox-writer", self._write_step, health or ThreadHealth(),
                                  self._stopped)
        self._writer.start()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = self._connection()
        with connection:
            connection.executescript(SCHEMA)
            connection.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)",
                               (uuid.uuid4().hex,))
            for key in ("high_water", "dropped", "dead_lettered"):
                connection.execute("INSERT OR IGNORE INTO meta VALUES (?, '0')", (key,))
        epoch = self._meta("epoch")
        if not isinstance(epoch, str) or not re.fullmatch(r"[0-9a-f]{32}", epoch):
            raise DamagedOutbox(f"meta epoch {str(epoch)[:40]!r} is not an epoch id")
        counters = {}
        for key in ("high_water", "dropped", "dead_lettered"):
            value = self._meta(key)
            if not isinstance(value, str) or not re.fullmatch(r"\d{1,18}", value):
                raise DamagedOutbox(f"meta {key} {str(value)[:40]!r} is not a count")
            counters[key] = int(value)
        next_seq = 1 + max(counters["high_water"], *(
            connection.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()[0]
            for table in ("events", "readings", "dead_letters")))
        # Counted once at start; kept up to date in memory afterwards (no per-batch COUNT).
        depth = sum(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                    for table in ("events", "readings"))
        with self._lock:
            self._next_seq = next_seq
            self._depth = depth
            self._dropped = counters["dropped"]
            self._dead_lettered = counters["dead_lettered"]
            self.epoch = epoch
            if self.storage_error is not None:
                log.info("outbox %s opened", self.path)
            self.storage_error = None

    def _cannot_open(self, error: BaseException) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
        with self._lock:
            if self.storage_error is None:
                log.error("cannot open the outbox %s: %s; holding records in memory and trying"
                          " again every %.0f s", self.path, error, RETRY_WRITE_S)
            self.storage_error = f"cannot open: {error}"
        self._next_open_attempt = time.monotonic() + RETRY_WRITE_S

    @property
    def is_open(self) -> bool:
        return self.epoch is not None

    # -- connections (one per thread: the writer and the uploader each have their own) -----
    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                         check_same_thread=True)
            if connection.execute("PRAGMA page_count").fetchone()[0] == 0:
                connection.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            self._local.connection = connection
            self._local.page_limit = None
        if self.max_page_count != self._local.page_limit:
            # Tests fill the database on purpose; 2**31 - 2 is SQLite's own ceiling.
            limit = self.max_page_count if self.max_page_count is not None else 2**31 - 2
            connection.execute(f"PRAGMA max_page_count={int(limit)}")
            self._local.page_limit = self.max_page_count
        return connection

    def _meta(self, key: str):
        row = self._connection().execute("SELECT value FROM meta WHERE key = ?",
                                         (key,)).fetchone()
        return None if row is None else row[0]

    # -- the sampling thread's side ---------------------------------------------------------
    def submit(self, record_type: str, time_s: float, body: dict) -> None:
        """Queue a record for the writer. Never blocks, never raises for the disk."""
        with self._lock:
            self._pending += 1
        self._queue.put((record_type, time_s, body))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is committed (or held in memory)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending > len(self._ring):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.committed.wait(remaining)
        return True

    # -- the writer thread ------------------------------------------------------------------
    def _write_step(self) -> None:
        """One round of the writer: take what was submitted, commit it (or hold it)."""
        try:
            item = self._queue.get(timeout=RETRY_WRITE_S if self._ring else 0.5)
        except queue.Empty:
            item = None
        batch = [item] if item is not None else []
        while len(batch) < 1000:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is not None:  # None is close()'s wake-up call
                batch.append(more)
        if not self.is_open:
            if time.monotonic() >= self._next_open_attempt:
                try:
                    self._open()
                except (sqlite3.OperationalError, OSError) as error:
                    self._cannot_open(error)
            if not self.is_open:
                self._hold_in_memory(list(self._ring) + batch, None)
                if not self._running:
                    self._finish()
                return
        if batch or self._ring:
            self._commit(list(self._ring) + batch)
        if not self._running and self._queue.empty() and not self._ring:
            self._finish()

    def _finish(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
        self._stopped.set()

    def _commit(self, items: list[tuple[str, float, dict]]) -> None:
        connection = self._connection()
        seq = self._next_seq
        try:
            connection.execute("BEGIN IMMEDIATE")
            for record_type, time_s, body in items:
                table = "events" if record_type == EVENT else "readings"
                moment = time_s if math.isfinite(time_s) else time.time()
                connection.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
                                   (seq, record_type, moment, encode_body(body)))
                seq += 1
            self._rows_since_check += len(items)
            dropped = self._enforce_backlog(connection, seq)
            if dropped:
                seq += 1  # the event that reports the drop took one
            connection.execute("COMMIT")
        except Exception as error:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._hold_in_memory(items, error)
            if not isinstance(error, sqlite3.Error):
                raise   # a bug, not the card: the supervisor reports it (`internal`)
            return
        with self._lock:
            self._next_seq = seq
            self._depth += len(items) + (1 if dropped else 0) - dropped
            self._pending -= len(items)
            if self._ring:
                self._ring.clear()
            if self.storage_error is not None:
                log.info("outbox writing again (%d records were held in memory)", len(items))
            self.storage_error = None
            self.committed.notify_all()

    def _hold_in_memory(self, items: list[tuple[str, float, dict]],
                        error: BaseException | None) -> None:
        with self._lock:
            if error is not None:
                if self.storage_error is None:
                    log.error("outbox cannot write to %s: %s; holding records in memory",
                              self.path, error)
                self.storage_error = str(error)
            self._ring.clear()
            self._ring.extend(items)
            while len(self._ring) > MEMORY_RING:
                # Full ring: the oldest reading goes first, events stay.
                victim = next((i for i, item in enumerate(self._ring) if item[0] != EVENT), 0)
                del self._ring[victim]
                self._pending -= 1
                self.memory_dropped += 1
            self.committed.notify_all()

    def _enforce_backlog(self, connection: sqlite3.Connection, next_seq: int) -> int:
        if self._rows_since_check < BACKLOG_CHECK_EVERY:
            return 0
        self._rows_since_check = 0
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        if (pages - free) * page_size <= self.max_backlog_bytes:
            return 0
        count = connection.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        victims = max(1, int(count * DROP_FRACTION)) if count else 0
        if not victims:
            return 0
        last = connection.execute("SELECT seq FROM readings ORDER BY seq LIMIT 1 OFFSET ?",
                                  (victims - 1,)).fetchone()[0]
        connection.execute("DELETE FROM readings WHERE seq <= ?", (last,))
        total = int(connection.execute("SELECT value FROM meta WHERE key='dropped'").fetchone()[0])
        total += victims
        connection.execute("UPDATE meta SET value = ? WHERE key = 'dropped'", (str(total),))
        self._dropped = total
        self._raise_high_water(connection, last)
        body = {"kind": "outbox", "dropped": victims, "dropped_total": total,
                "reason": f"backlog over {self.max_backlog_bytes // (1024 * 1024)} MB"}
        connection.execute("INSERT INTO events VALUES (?, ?, ?, ?)",
                           (next_seq, EVENT, time.time(), json.dumps(body)))
        log.warning("outbox full: dropped the %d oldest readings (%d in all)", victims, total)
        return victims

    def _raise_high_water(self, connection: sqlite3.Connection, seq: int) -> None:
        connection.execute("UPDATE meta SET value = MAX(CAST(value AS INTEGER), ?) "
                           "WHERE key = 'high_water'", (seq,))

    # -- the uploader's side ----------------------------------------------------------------
    def next_batch(self, limit: int) -> list[Record]:
        """Events first, then readings and heartbeats, each oldest first. A row that cannot be
        decoded is moved to the dead letters with the reason and left out."""
        if not self.is_open:
            return []
        connection = self._connection()
        rows = connection.execute("SELECT seq, type, time, body FROM events ORDER BY seq "
                                  "LIMIT ?", (limit,)).fetchall()
        if len(rows) < limit:
            rows += connection.execute("SELECT seq, type, time, body FROM readings ORDER BY seq"
                                       " LIMIT ?", (limit - len(rows),)).fetchall()
        records = []
        for row in rows:
            try:
                records.append(self._decode(row))
            except (ValueError, TypeError, UnicodeDecodeError) as error:
                self._dead_letter_row(row, f"damaged row: {error}"[:300])
        return records

    @staticmethod
    def _decode(row: tuple) -> Record:
        seq, kind, moment, body = row
        if not isinstance(seq, int) or seq < 1:
            raise ValueError(f"seq {seq!r}")
        if kind not in RECORD_TYPES:
            raise ValueError(f"type {kind!r}")
        if isinstance(moment, bool) or not isinstance(moment, (int, float)) \
                or not math.isfinite(moment):
            raise ValueError(f"time {moment!r}")
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        decoded = json.loads(body)
        if not isinstance(decoded, dict):
            raise ValueError("body is not an object")
        return Record(seq, kind, float(moment), finite(decoded))

    def _dead_letter_row(self, row: tuple, reason: str) -> None:
        seq = row[0]
        log.error("outbox row seq %r cannot be read (%s): moved to the dead letters", seq,
                  reason)
        connection = self._connection()
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            moment = row[2] if isinstance(row[2], (int, float)) else 0.0
            connection.execute("INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (seq, str(row[1])[:20], moment, repr(row[3])[:2000], None,
                                reason, time.time()))
            deleted = sum(connection.execute(f"DELETE FROM {table} WHERE seq = ?",
                                             (seq,)).rowcount
                          for table in ("events", "readings"))
            connection.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                               "WHERE key = 'dead_lettered'")
        with self._lock:
            self._depth -= deleted
            self._dead_lettered += 1

    def ack(self, seqs: list[int]) -> None:
        """Upstream has these: delete them."""
        if not seqs:
            return
        connection = self._connection()
        deleted = 0
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            for table in ("events", "readings"):
                deleted += connection.executemany(
                    f"DELETE FROM {table} WHERE seq = ?", [(s,) for s in seqs]).rowcount
            self._raise_high_water(connection, max(seqs))
        with self._lock:
            self._depth -= deleted

    def dead_letter(self, record: Record, status: int | None, reason: str) -> None:
        """Upstream refuses this record for good: keep it aside (capped) and go on."""
        connection = self._connection()
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (record.seq, record.type, record.time, json.dumps(record.body),
                                status, reason[:500], time.time()))
            table = "events" if record.type == EVENT else "readings"
            deleted = connection.execute(f"DELETE FROM {table} WHERE seq = ?",
                                         (record.seq,)).rowcount
            connection.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                               "WHERE key = 'dead_lettered'")
            oldest_kept = connection.execute(
                "SELECT seq FROM dead_letters ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (self.dead_letter_max - 1,)).fetchone()
            if oldest_kept is not None:
                connection.execute("DELETE FROM dead_letters WHERE seq < ?", (oldest_kept[0],))
        with self._lock:
            self._depth -= deleted
            self._dead_lettered += 1

    # -- numbers for the status and heartbeats ----------------------------------------------
    def stats(self) -> dict:
        """From memory only: the status is written every sample and must not touch the disk."""
        with self._lock:
            return {"epoch": self.epoch, "depth": self._depth, "pending": self._pending,
                    "held_in_memory": len(self._ring),
                    "dropped": self._dropped + self.memory_dropped,
                    "dead_lettered": self._dead_lettered, "storage_error": self.storage_error}

    def ensure_writer(self) -> bool:
        """Start the writer again if its thread is gone (the daemon asks every round)."""
        return self._writer.ensure_running()

    def close(self, timeout: float = 10.0) -> None:
        """Commit what was submitted, then stop the writer."""
        self._running = False
        self._queue.put(None)
        self._writer.join(timeout)
        self._stopped.set()
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


# -- a damaged outbox: what can still be read is sent under its own epoch ----------------------

SALVAGE_PREFIX = "salvage-"


def salvage(damaged: Path, directory: Path) -> Path | None:
    """Copy what can still be read from a damaged outbox file (and its WAL) into a new outbox
    file in `directory` that keeps the old epoch and sequence numbers, so the records can be
    sent as what they were: `(station, epoch, seq)` stays unique and upstream deduplicates
    anything it had already. Returns the new file, or None when nothing could be read."""
    import shutil
    import tempfile
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        copy = Path(scratch) / "damaged.sqlite"
        shutil.copyfile(damaged, copy)
        for suffix in ("-wal",):
            if Path(f"{damaged}{suffix}").exists():
                shutil.copyfile(f"{damaged}{suffix}", f"{copy}{suffix}")
        try:
            source = sqlite3.connect(copy, isolation_level=None)
        except sqlite3.Error:
            return None
        try:
            epoch = _readable(lambda: source.execute(
                "SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])
            if not isinstance(epoch, str) or not re.fullmatch(r"[0-9a-f]{32}", epoch):
                epoch = uuid.uuid5(uuid.NAMESPACE_URL, str(damaged)).hex
            rows = []
            for table in ("events", "readings"):
                seqs = _readable(lambda: [row[0] for row in source.execute(
                    f"SELECT seq FROM {table} ORDER BY seq")]) or []
                for seq in seqs:
                    row = _readable(lambda: source.execute(
                        f"SELECT seq, type, time, body FROM {table} WHERE seq = ?",
                        (seq,)).fetchone())
                    if row is not None:
                        rows.append((table, row))
        finally:
            source.close()
    if not rows:
        return None
    target = directory / f"{SALVAGE_PREFIX}{epoch}.sqlite"
    destination = sqlite3.connect(target, isolation_level=None)
    try:
        destination.execute(f"PRAGMA page_size={PAGE_SIZE}")
        destination.execute("PRAGMA journal_mode=WAL")
        destination.executescript(SCHEMA)
        with destination:
            destination.execute("BEGIN IMMEDIATE")
            destination.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (epoch,))
            for key in ("high_water", "dropped", "dead_lettered"):
                destination.execute("INSERT OR IGNORE INTO meta VALUES (?, '0')", (key,))
            for table, row in rows:
                destination.execute(f"INSERT OR IGNORE INTO {table} VALUES (?, ?, ?, ?)", row)
    finally:
        destination.close()
    log.warning("salvaged %d records of the damaged outbox %s into %s (epoch %s)", len(rows),
                damaged.name, target.name, epoch)
    return target


def _readable(read):
    try:
        return read()
    except (sqlite3.Error, TypeError, IndexError):
        return None
