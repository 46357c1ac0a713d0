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
  writer tries again until the card takes them.
- Every operation is an indexed range or key lookup: the cost is the same with 1,000,000 rows
  as with none.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class Record:
    seq: int
    type: str
    time: float          # epoch seconds (wall clock when it was taken)
    body: dict           # the type's own fields


class Outbox:
    def __init__(self, path: Path, max_backlog_mb: float = 200.0, dead_letter_max: int = 10000,
                 max_page_count: int | None = None):
        self.path = Path(path)
        self.max_backlog_bytes = int(max_backlog_mb * 1024 * 1024)
        self.dead_letter_max = dead_letter_max
        self.max_page_count = max_page_count  # tests: make the database "full" on purpose
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._ring: deque[tuple[str, float, dict]] = deque()
        self.memory_dropped = 0
        self.storage_error: str | None = None
        self.committed = threading.Condition(self._lock)
        connection = self._connection()
        with connection:
            connection.executescript(SCHEMA)
            connection.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (uuid.uuid4().hex,))
            for key in ("high_water", "dropped", "dead_lettered"):
                connection.execute("INSERT OR IGNORE INTO meta VALUES (?, '0')", (key,))
        self.epoch = self._meta("epoch")
        self._next_seq = 1 + max(int(self._meta("high_water")), *(
            connection.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()[0]
            for table in ("events", "readings", "dead_letters")))
        # Counted once at start; kept up to date in memory afterwards (no per-batch COUNT).
        self._depth = sum(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                          for table in ("events", "readings"))
        self._pending = 0
        self._rows_since_check = BACKLOG_CHECK_EVERY  # look at the size on the first commit
        self._dropped = int(self._meta("dropped"))
        self._dead_lettered = int(self._meta("dead_lettered"))
        self._running = True
        self._writer = threading.Thread(target=self._write_loop, name="outbox-writer",
                                        daemon=True)
        self._writer.start()

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

    def _meta(self, key: str) -> str:
        return self._connection().execute("SELECT value FROM meta WHERE key = ?",
                                          (key,)).fetchone()[0]

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
    def _write_loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=RETRY_WRITE_S if self._ring else 0.5)
            except queue.Empty:
                item = None
            if item is None and not self._ring:
                if not self._running:
                    break
                continue
            batch = [item] if item is not None else []
            while len(batch) < 1000:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is not None:  # None is close()'s wake-up call
                    batch.append(more)
            self._commit(list(self._ring) + batch)
            if not self._running and self._queue.empty() and not self._ring:
                break
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()

    def _commit(self, items: list[tuple[str, float, dict]]) -> None:
        connection = self._connection()
        seq = self._next_seq
        try:
            connection.execute("BEGIN IMMEDIATE")
            for record_type, time_s, body in items:
                table = "events" if record_type == EVENT else "readings"
                connection.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
                                   (seq, record_type, time_s, json.dumps(body, default=str)))
                seq += 1
            self._rows_since_check += len(items)
            dropped = self._enforce_backlog(connection, seq)
            if dropped:
                seq += 1  # the event that reports the drop took one
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._hold_in_memory(items, error)
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

    def _hold_in_memory(self, items: list[tuple[str, float, dict]], error: sqlite3.Error) -> None:
        with self._lock:
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
        """Events first, then readings and heartbeats, each oldest first."""
        connection = self._connection()
        rows = connection.execute("SELECT seq, type, time, body FROM events ORDER BY seq "
                                  "LIMIT ?", (limit,)).fetchall()
        if len(rows) < limit:
            rows += connection.execute("SELECT seq, type, time, body FROM readings ORDER BY seq"
                                       " LIMIT ?", (limit - len(rows),)).fetchall()
        return [Record(seq, kind, moment, json.loads(body)) for seq, kind, moment, body in rows]

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

    def close(self, timeout: float = 10.0) -> None:
        """Commit what was submitted, then stop the writer."""
        self._running = False
        self._queue.put(None)
        self._writer.join(timeout)
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
