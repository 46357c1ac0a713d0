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
  reason, and never blocks the queue. Meta values are checked when the file is opened.
- A damaged file (SQLite reports it corrupt, at opening or at any moment while running; a
  failing SD card does this) is moved aside for inspection, what can still be read of it is
  salvaged into a `salvage-<epoch>.sqlite` file that is sent under its old epoch (see
  `salvaged`), and a new file (a new epoch) takes over; records being written meanwhile wait
  in memory. Every use of the file holds `_file_lock`, so the file is never renamed under an
  open transaction of another thread. After opening, the writer thread runs `PRAGMA
  quick_check` and counts the queue before the uploader may read or delete anything: a DELETE
  on a damaged page can destroy intact rows beside it before SQLite notices the damage.
- The uploader's connection commits with `synchronous=NORMAL`: an acknowledgement lost in a
  power cut only sends records again, which upstream deduplicates.
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
OUTBOX_FILE_NAME = "outbox.sqlite"  # in storage.state_dir
MEMORY_RING = 20000  # records kept in memory while the card refuses them
# A WAL frame is a page plus a 24-byte header. With 4 KiB pages every frame straddles two 4 KiB
# blocks of the card, so each durable reading writes 8 KiB; with 1 KiB pages a frame usually
# fits in one block (measured by scripts/bench: bytes written per durable reading).
PAGE_SIZE = 1024
BACKLOG_CHECK_EVERY = 64  # rows written between two looks at the database size
RETRY_WRITE_S = 5.0
DROP_FRACTION = 0.01  # readings dropped at a time when the backlog is full

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


def is_damage(error: BaseException) -> bool:
    """SQLite says the file is corrupt or not a database: not the card being full or busy."""
    if isinstance(error, DamagedOutbox):
        return True
    name = getattr(error, "sqlite_errorname", "") or ""
    return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB"


@dataclass
class Record:
    seq: int
    type: str
    time: float  # epoch seconds (wall clock when it was taken)
    body: dict  # the type's own fields
    epoch: str | None = None  # of the file it was read from: it is sent and acknowledged as that


class Outbox:
    def __init__(
        self,
        path: Path,
        max_backlog_mb: float = 200.0,
        dead_letter_max: int = 10000,
        max_page_count: int | None = None,
        health: ThreadHealth | None = None,
    ):
        self.path = Path(path)
        self.max_backlog_bytes = int(max_backlog_mb * 1024 * 1024)
        self.dead_letter_max = dead_letter_max
        self.max_page_count = max_page_count  # tests: make the database "full" on purpose
        self._lock = threading.Lock()
        # Held for every use of the database file (any thread), so that a damaged file is
        # only ever moved aside when no other thread is inside a statement. Taken before
        # _lock, never after.
        self._file_lock = threading.RLock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []  # every thread's, for replacement
        self._generation = 0  # which file the connections are for; +1 per replacement
        self.salvaged: list[Path] = []  # salvage files made while running (the daemon drains them)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._ring: deque[tuple[str, float, dict]] = deque()
        self.memory_dropped = 0
        self.storage_error: str | None = None
        self._uploader_error: str | None = None  # logged once until the uploader's side works
        self.committed = threading.Condition(self._lock)
        self.epoch: str | None = None  # None until the database could be opened
        self._next_seq = 1
        self._depth = 0
        self._checked = False
        self._pending = 0
        self._rows_since_check = BACKLOG_CHECK_EVERY  # look at the size on the first commit
        self._dropped = 0
        self._dead_lettered = 0
        self._running = True
        self._stopped = threading.Event()
        self._next_open_attempt = 0.0
        self._try_open()
        self._writer = LoopThread(
            "outbox-writer", self._write_step, health or ThreadHealth(), self._stopped
        )
        self._writer.start()

    def _try_open(self) -> None:
        with self._file_lock:
            try:
                self._open()
            except sqlite3.Error as error:
                if is_damage(error):
                    self._replace_damaged(error)
                else:
                    # A full or read-only card, a missing mount: records wait in memory and
                    # the writer tries again (the daemon shows the `storage` fault meanwhile).
                    self._cannot_open(error)
            except OSError as error:
                self._cannot_open(error)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = self._connection()
        with connection:
            connection.executescript(SCHEMA)
            connection.execute(
                "INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (uuid.uuid4().hex,)
            )
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
        next_seq = 1 + max(
            counters["high_water"],
            *(
                connection.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()[0]
                for table in ("events", "readings", "dead_letters")
            ),
        )
        with self._lock:
            self._next_seq = next_seq
            # Checked and counted by the writer thread, not here: after a long outage a
            # million queued rows took seconds to count on an SD card, and the first sample
            # waited for it. The uploader touches the file only once it is checked.
            self._depth = 0
            self._checked = False
            self._dropped = counters["dropped"]
            self._dead_lettered = counters["dead_lettered"]
            self.epoch = epoch
            if self.storage_error is not None:
                log.info("outbox %s opened", self.path)
            self.storage_error = None

    def _cannot_open(self, error: BaseException | str) -> None:
        self._close_connections()
        with self._lock:
            self.epoch = None
            if self.storage_error is None:
                log.error(
                    "cannot open the outbox %s: %s; holding records in memory and trying"
                    " again every %.0f s",
                    self.path,
                    error,
                    RETRY_WRITE_S,
                )
            self.storage_error = f"cannot open: {error}"
        self._next_open_attempt = time.monotonic() + RETRY_WRITE_S

    @property
    def is_open(self) -> bool:
        return self.epoch is not None

    # -- a damaged file --------------------------------------------------------------------
    def _replace_damaged(self, error: BaseException) -> None:
        """Move the damaged file aside, salvage what can be read, start a new one. Called
        holding _file_lock: no other thread is using the file."""
        aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
        n = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}-{n}")
            n += 1
        log.error(
            "outbox %s is damaged (%s): moved to %s, starting a new one; what can still"
            " be read goes upstream under its own epoch",
            self.path,
            error,
            aside.name,
        )
        self._close_connections()
        with self._lock:
            self.epoch = None
        try:
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.rename(f"{aside}{suffix}")
        except OSError as failed:
            self._cannot_open(f"damaged, and cannot be moved aside: {failed}")
            return
        try:
            target = salvage(aside, self.path.parent)
        except (OSError, sqlite3.Error) as failed:
            log.error("nothing could be salvaged from %s: %s", aside.name, failed)
        else:
            if target is not None:
                self.salvaged.append(target)
        try:
            self._open()
        except (sqlite3.Error, OSError) as failed:
            self._cannot_open(failed)

    def _after_error(self, error: BaseException) -> None:
        """Called holding _file_lock when a statement failed: a damaged file is replaced."""
        if is_damage(error) and self.is_open:
            self._replace_damaged(error)

    # -- connections (one per thread: the writer and the uploader each have their own) -----
    def _close_connections(self) -> None:
        """Every thread's connection (holding _file_lock: none of them is in use)."""
        with self._file_lock:
            self._generation += 1
            for connection in self._connections:
                try:
                    connection.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None or self._local.generation != self._generation:
            # check_same_thread=False only so that _close_connections may close it; it is
            # used by its own thread alone.
            connection = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            self._connections.append(connection)
            self._local.connection = connection
            self._local.generation = self._generation
            self._local.page_limit = None
            self._local.relaxed = False
            if connection.execute("PRAGMA page_count").fetchone()[0] == 0:
                connection.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
        if self.max_page_count != self._local.page_limit:
            # Tests fill the database on purpose; 2**31 - 2 is SQLite's own ceiling.
            limit = self.max_page_count if self.max_page_count is not None else 2**31 - 2
            connection.execute(f"PRAGMA max_page_count={int(limit)}")
            self._local.page_limit = self.max_page_count
        return connection

    def _meta(self, key: str):
        row = self._connection().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
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
    def _check_and_count(self) -> None:
        """Once per opened file, on the writer thread: `PRAGMA quick_check`, then count the
        queued rows (kept up to date in memory afterwards, no per-batch COUNT). Until it has
        passed, the uploader does not read, acknowledge or dead-letter anything here: in the
        fault-injection suite an acknowledgement's DELETE on a damaged page destroyed four
        intact neighbouring rows before anything noticed the damage."""
        with self._file_lock:
            if not self.is_open:
                return
            try:
                connection = self._connection()
                verdict = connection.execute("PRAGMA quick_check(1)").fetchone()[0]
                if verdict != "ok":
                    raise DamagedOutbox(f"quick_check: {str(verdict)[:200]}")
                depth = sum(
                    connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                    for table in ("events", "readings")
                )
            except sqlite3.Error as error:
                if is_damage(error):
                    self._replace_damaged(error)  # salvaged while still untouched
                else:
                    self._cannot_open(error)
                return
            with self._lock:
                # Acknowledgements before now are in the count; the writer adds from here on.
                self._depth = depth
                self._checked = True

    def _write_step(self) -> None:
        """One round of the writer: take what was submitted, commit it (or hold it)."""
        if not self._checked:
            self._check_and_count()
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
                self._try_open()
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
        self._stopped.set()  # close() closes the connections

    def _commit(self, items: list[tuple[str, float, dict]]) -> None:
        with self._file_lock:
            self._commit_holding_file(items)

    def _commit_holding_file(self, items: list[tuple[str, float, dict]]) -> None:
        seq = self._next_seq
        connection = None
        try:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            for record_type, time_s, body in items:
                table = "events" if record_type == EVENT else "readings"
                moment = time_s if math.isfinite(time_s) else time.time()
                connection.execute(
                    f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
                    (seq, record_type, moment, encode_body(body)),
                )
                seq += 1
            self._rows_since_check += len(items)
            dropped = self._enforce_backlog(connection, seq)
            if dropped:
                seq += 1  # the event that reports the drop took one
            connection.execute("COMMIT")
        except Exception as error:
            try:
                if connection is not None:
                    connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._after_error(error)  # a damaged file: replaced; the items go to the new one
            self._hold_in_memory(items, error)
            if not isinstance(error, sqlite3.Error):
                raise  # a bug, not the card: the supervisor reports it (`internal`)
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

    def _hold_in_memory(
        self, items: list[tuple[str, float, dict]], error: BaseException | None
    ) -> None:
        with self._lock:
            if error is not None:
                if self.storage_error is None:
                    log.error(
                        "outbox cannot write to %s: %s; holding records in memory", self.path, error
                    )
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
        last = connection.execute(
            "SELECT seq FROM readings ORDER BY seq LIMIT 1 OFFSET ?", (victims - 1,)
        ).fetchone()[0]
        connection.execute("DELETE FROM readings WHERE seq <= ?", (last,))
        total = int(connection.execute("SELECT value FROM meta WHERE key='dropped'").fetchone()[0])
        total += victims
        connection.execute("UPDATE meta SET value = ? WHERE key = 'dropped'", (str(total),))
        self._dropped = total
        self._raise_high_water(connection, last)
        body = {
            "kind": "outbox",
            "dropped": victims,
            "dropped_total": total,
            "reason": f"backlog over {self.max_backlog_bytes // (1024 * 1024)} MB",
        }
        connection.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?)",
            (next_seq, EVENT, time.time(), json.dumps(body)),
        )
        log.warning("outbox full: dropped the %d oldest readings (%d in all)", victims, total)
        return victims

    def _raise_high_water(self, connection: sqlite3.Connection, seq: int) -> None:
        connection.execute(
            "UPDATE meta SET value = MAX(CAST(value AS INTEGER), ?) WHERE key = 'high_water'",
            (seq,),
        )

    # -- the uploader's side ----------------------------------------------------------------
    def _guarded(self, operation, *args, epoch: str | None = None, damaged=None):
        """`operation(*args)` on the file, holding _file_lock. When the file turns out to be
        damaged it is replaced and `damaged` is returned. Records of another epoch (read
        from a file since replaced) are not touched: `damaged` is returned at once."""
        with self._file_lock:
            if not self.is_open or not self._checked or (epoch is not None and epoch != self.epoch):
                return damaged
            try:
                self._relax_sync()
                result = operation(*args)
            except sqlite3.Error as error:
                if is_damage(error):
                    self._replace_damaged(error)
                else:
                    # A full, read-only or failing card. Nothing is lost: an unacknowledged
                    # batch stays queued and goes again (upstream deduplicates it). The
                    # `storage` fault says so; the writer clears it once it can commit.
                    self._uploader_side_failed(operation, error)
                return damaged
            if self._uploader_error is not None:
                log.info("outbox usable by the uploader again")
                self._uploader_error = None
            return result

    def _relax_sync(self) -> None:
        """The uploader's connection commits without waiting for the card (synchronous=NORMAL
        in WAL mode): an acknowledgement or a dead-letter move lost in a power cut only means
        the record goes again, and upstream deduplicates it. Readings, on the writer's
        connection, stay fully synced. Measured (bench/storage.py upload_cost): 11.3 -> 7.2 KB
        written per reading sent at once, 7.2 -> 6.5 KB in calm batches of six."""
        if not getattr(self._local, "relaxed", False):
            self._connection().execute("PRAGMA synchronous=NORMAL")
            self._local.relaxed = True

    def _uploader_side_failed(self, operation, error: sqlite3.Error) -> None:
        with self._lock:
            first = self._uploader_error is None
            self._uploader_error = str(error)
            self.storage_error = self.storage_error or f"{error}"
        if first:
            log.error(
                "outbox cannot %s on %s: %s; the records stay queued",
                operation.__name__.strip("_").replace("_", " "),
                self.path,
                error,
            )

    def next_batch(self, limit: int) -> list[Record]:
        """Events first, then readings and heartbeats, each oldest first. A row that cannot be
        decoded is moved to the dead letters with the reason and left out."""
        return self._guarded(self._read_batch, limit, damaged=[])

    def _read_batch(self, limit: int) -> list[Record]:
        connection = self._connection()
        # Text read as bytes: a damaged row with bytes that are not UTF-8 must fail in
        # _decode (dead letter) rather than in the fetch (which would stop the whole batch).
        query = (
            "SELECT seq, CAST(type AS BLOB), time, CAST(body AS BLOB) FROM {} ORDER BY seq LIMIT ?"
        )
        rows = connection.execute(query.format("events"), (limit,)).fetchall()
        if len(rows) < limit:
            rows += connection.execute(query.format("readings"), (limit - len(rows),)).fetchall()
        records = []
        for row in rows:
            try:
                records.append(self._decode(row, self.epoch))
            except (ValueError, TypeError, UnicodeDecodeError) as error:
                self._dead_letter_row(row, f"damaged row: {error}"[:300])
        return records

    @staticmethod
    def _decode(row: tuple, epoch: str | None = None) -> Record:
        seq, kind, moment, body = row
        if not isinstance(seq, int) or seq < 1:
            raise ValueError(f"seq {seq!r}")
        if isinstance(kind, bytes):
            kind = kind.decode("utf-8")
        if kind not in RECORD_TYPES:
            raise ValueError(f"type {kind!r}")
        if (
            isinstance(moment, bool)
            or not isinstance(moment, (int, float))
            or not math.isfinite(moment)
        ):
            raise ValueError(f"time {moment!r}")
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        decoded = json.loads(body)
        if not isinstance(decoded, dict):
            raise ValueError("body is not an object")
        return Record(seq, kind, float(moment), finite(decoded), epoch)

    def _dead_letter_row(self, row: tuple, reason: str) -> None:
        seq = row[0]
        log.error("outbox row seq %r cannot be read (%s): moved to the dead letters", seq, reason)
        connection = self._connection()
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            moment = row[2] if isinstance(row[2], (int, float)) else 0.0
            connection.execute(
                "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, str(row[1])[:20], moment, repr(row[3])[:2000], None, reason, time.time()),
            )
            deleted = sum(
                connection.execute(f"DELETE FROM {table} WHERE seq = ?", (seq,)).rowcount
                for table in ("events", "readings")
            )
            connection.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dead_lettered'"
            )
        with self._lock:
            self._depth -= deleted
            self._dead_lettered += 1

    def ack(self, seqs: list[int], epoch: str | None = None) -> None:
        """Upstream has these (of `epoch`, when given): delete them. Records of a file that
        was replaced since are left alone: their salvaged copies go again, and upstream
        deduplicates them."""
        if seqs:
            self._guarded(self._delete_acknowledged, seqs, epoch=epoch)

    def _delete_acknowledged(self, seqs: list[int]) -> None:
        connection = self._connection()
        deleted = 0
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            for table in ("events", "readings"):
                deleted += connection.executemany(
                    f"DELETE FROM {table} WHERE seq = ?", [(s,) for s in seqs]
                ).rowcount
            self._raise_high_water(connection, max(seqs))
        with self._lock:
            self._depth -= deleted

    def dead_letter(self, record: Record, status: int | None, reason: str) -> None:
        """Upstream refuses this record for good: keep it aside (capped) and go on."""
        self._guarded(self._move_to_dead_letters, record, status, reason, epoch=record.epoch)

    def _move_to_dead_letters(self, record: Record, status: int | None, reason: str) -> None:
        connection = self._connection()
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.seq,
                    record.type,
                    record.time,
                    json.dumps(record.body),
                    status,
                    reason[:500],
                    time.time(),
                ),
            )
            table = "events" if record.type == EVENT else "readings"
            deleted = connection.execute(
                f"DELETE FROM {table} WHERE seq = ?", (record.seq,)
            ).rowcount
            connection.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'dead_lettered'"
            )
            oldest_kept = connection.execute(
                "SELECT seq FROM dead_letters ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (self.dead_letter_max - 1,),
            ).fetchone()
            if oldest_kept is not None:
                connection.execute("DELETE FROM dead_letters WHERE seq < ?", (oldest_kept[0],))
        with self._lock:
            self._depth -= deleted
            self._dead_lettered += 1

    def retry_dead_letters(self) -> int | None:
        """Put every dead letter back in the queue, under its own seq (the upstream refused it,
        so never stored it: no duplicate), after the upstream or its configuration was fixed.
        Returns how many, or None when the file cannot be used now."""
        return self._guarded(self._requeue_dead_letters)

    def _requeue_dead_letters(self) -> int:
        connection = self._connection()
        requeued = 0
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            rows = connection.execute("SELECT seq, type, time, body FROM dead_letters").fetchall()
            for seq, record_type, time_s, body in rows:
                table = "events" if record_type == EVENT else "readings"
                requeued += connection.execute(
                    f"INSERT OR IGNORE INTO {table} VALUES (?, ?, ?, ?)",
                    (seq, record_type, time_s, body),
                ).rowcount
            connection.execute("DELETE FROM dead_letters")
        with self._lock:
            self._depth += requeued
        return requeued

    # -- numbers for the status and heartbeats ----------------------------------------------
    def stats(self) -> dict:
        """From memory only: the status is written every sample and must not touch the disk.
        `depth` is None until the writer thread has checked and counted the file's rows after
        opening it (a moment; seconds for a million rows on an SD card)."""
        with self._lock:
            depth = self._depth if self._checked else None
            return {
                "epoch": self.epoch,
                "depth": depth,
                "pending": self._pending,
                "held_in_memory": len(self._ring),
                "dropped": self._dropped + self.memory_dropped,
                "dead_lettered": self._dead_lettered,
                "storage_error": self.storage_error,
            }

    def take_salvaged(self) -> list[Path]:
        """The salvage files made since the last call (to be sent under their epochs)."""
        with self._file_lock:
            taken, self.salvaged = self.salvaged, []
        return taken

    def ensure_writer(self) -> bool:
        """Start the writer again if its thread is gone (the daemon asks every round)."""
        return self._writer.ensure_running()

    def close(self, timeout: float = 10.0) -> None:
        """Commit what was submitted, then stop the writer."""
        self._running = False
        self._queue.put(None)
        self._writer.join(timeout)
        self._stopped.set()
        self._close_connections()


# -- a damaged outbox: what can still be read is sent under its own epoch ----------------------

SALVAGE_PREFIX = "salvage-"
MISSED_KEYS_PROBED = 10000  # beyond the last key a damaged file still shows


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
            epoch = _readable(
                lambda: source.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
            )
            if not isinstance(epoch, str) or not re.fullmatch(r"[0-9a-f]{32}", epoch):
                epoch = uuid.uuid5(uuid.NAMESPACE_URL, str(damaged)).hex
            rows = []
            for table in ("events", "readings"):
                for seq in sorted(_salvageable_seqs(source, table)):
                    row = _readable(
                        lambda: source.execute(
                            f"SELECT seq, type, time, body FROM {table} WHERE seq = ?", (seq,)
                        ).fetchone()
                    )
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
    log.warning(
        "salvaged %d records of the damaged outbox %s into %s (epoch %s)",
        len(rows),
        damaged.name,
        target.name,
        epoch,
    )
    return target


def _salvageable_seqs(source: sqlite3.Connection, table: str) -> set[int]:
    """The keys of `table` in a damaged file. A damaged page stops a scan where it lies, so:
    scan forward until it stops, scan backward until it stops, and look up every key in
    between one by one (a lookup only reads the pages on its own path)."""

    def scan(order: str) -> list[int]:
        found = []
        try:
            for (seq,) in source.execute(f"SELECT seq FROM {table} ORDER BY seq {order}"):
                found.append(seq)
        except sqlite3.Error:
            pass
        return found

    forward = scan("ASC")
    backward = scan("DESC")
    seqs = set(forward) | set(backward)
    low = forward[-1] if forward else 0
    high = (
        backward[-1]
        if backward
        else max(
            [
                low,
                *(
                    _readable(lambda: source.execute(f"SELECT MAX(seq) FROM {other}").fetchone()[0])
                    or 0
                    for other in ("events", "readings", "dead_letters")
                ),
            ]
        )
        + MISSED_KEYS_PROBED
    )
    if forward and backward and forward[-1] >= backward[-1]:
        return seqs  # both scans went all the way: nothing in between
    for seq in range(low + 1, high):
        if _readable(
            lambda: source.execute(f"SELECT 1 FROM {table} WHERE seq = ?", (seq,)).fetchone()
        ):
            seqs.add(seq)
    return seqs


def _readable(read):
    try:
        return read()
    except (sqlite3.Error, TypeError, IndexError):
        return None
