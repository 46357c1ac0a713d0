"""The reference receiver: what the city's platform must do with gauge-agent's batches.

Standard library only (`http.server` + `sqlite3`) so anyone can run it:

    python -m agent.receiver --port 8080 --db receiver.sqlite --token-file token

- `POST` (any path): checks `Authorization: Bearer <token>` (401 without, 403 for a wrong one),
  validates the batch (422 with the reason and the index of the first bad record; the agent
  then splits the batch to isolate it), stores each record once: `(station, epoch, seq)` is
  the primary key, so a batch sent again is accepted and never stored twice. Answers 200 with
  `{"accepted": N, "duplicates": M}`.
- `GET /health`: 200.

docs/upstream.md describes the format. For tests, `ReferenceReceiver.script` holds scripted
faults consumed one per request: an HTTP status with headers, a hang, or a connection reset.
"""

from __future__ import annotations

import argparse
import hmac
import json
import math
import socket
import sqlite3
import ssl
import struct
import sys
import threading
import time
from collections import deque
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY_BYTES = 8 * 1024 * 1024
RECORD_TYPES = {"reading", "event", "heartbeat"}
EVENT_KINDS = {"level", "rate", "fault", "siren", "outbox"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    station TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, time TEXT NOT NULL, body TEXT NOT NULL, received REAL NOT NULL,
    PRIMARY KEY (station, epoch, seq)) WITHOUT ROWID;
"""


class BatchInvalid(ValueError):
    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


def _number_or_null(record: dict, key: str, index: int) -> None:
    value = record.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value)):
        raise BatchInvalid(f"records[{index}].{key} must be a number or null", index)


def validate(batch: object) -> list[dict]:
    """The checks a platform should make. Returns the records."""
    if not isinstance(batch, dict):
        raise BatchInvalid("the body must be a JSON object")
    for key in ("station", "epoch"):
        if not isinstance(batch.get(key), str) or not batch[key]:
            raise BatchInvalid(f"{key} must be a non-empty string")
    records = batch.get("records")
    if not isinstance(records, list) or not records:
        raise BatchInvalid("records must be a non-empty list")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise BatchInvalid(f"records[{index}] must be an object", index)
        seq = record.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise BatchInvalid(f"records[{index}].seq must be a whole number >= 1", index)
        if record.get("type") not in RECORD_TYPES:
            raise BatchInvalid(f"records[{index}].type must be one of {sorted(RECORD_TYPES)}",
                               index)
        moment = record.get("time")
        try:
            if not isinstance(moment, str):
                raise ValueError
            datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            raise BatchInvalid(f"records[{index}].time must be an ISO 8601 time", index) from None
        if record["type"] == "reading":
            for key in ("level_m", "reading_m", "raw", "rate_m_per_h"):
                _number_or_null(record, key, index)
            if not isinstance(record.get("ok"), bool):
                raise BatchInvalid(f"records[{index}].ok must be true or false", index)
        elif record["type"] == "event":
            if record.get("kind") not in EVENT_KINDS:
                raise BatchInvalid(f"records[{index}].kind must be one of {sorted(EVENT_KINDS)}",
                                   index)
    return records


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A gauge that loses power mid-request resets the connection: normal, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class ReferenceReceiver:
    """The server, runnable in a thread (tests) or as a program."""

    def __init__(self, db_path: Path, token: str, host: str = "127.0.0.1", port: int = 0,
                 tls_cert: Path | None = None, tls_key: Path | None = None):
        self.db_path = Path(db_path)
        self.token = token
        self.script: deque[tuple] = deque()  # ("status", code, headers) | ("hang", s) | ("reset",)
        self.requests = 0
        self.duplicates = 0
        self.idempotency_keys: list[str] = []
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass  # quiet: tests and the demo print what matters

            def do_GET(self):
                if self.path == "/health":
                    self._answer(200, {"ok": True})
                else:
                    self._answer(404, {"error": "not found"})

            def do_POST(self):
                receiver._handle(self)

            def _answer(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = QuietServer((host, port), Handler)
        self.port = self.server.server_address[1]
        scheme = "http"
        if tls_cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_cert, tls_key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{host}:{self.port}/ingest"
        self._thread: threading.Thread | None = None

    # -- running ----------------------------------------------------------------------------
    def start(self) -> "ReferenceReceiver":
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="receiver")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        self.stop()
        self._db.close()

    # -- one request ------------------------------------------------------------------------
    def _handle(self, handler) -> None:
        with self._lock:
            self.requests += 1
            action = self.script.popleft() if self.script else None
            self.idempotency_keys.append(handler.headers.get("Idempotency-Key", ""))
        length = int(handler.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            handler._answer(413, {"error": f"batch over {MAX_BODY_BYTES} bytes"})
            return
        raw = handler.rfile.read(length)
        if action is not None:
            if action[0] == "hang":
                time.sleep(action[1])
            elif action[0] == "reset":
                # Close with RST instead of an answer, as a failing proxy does.
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                              struct.pack("ii", 1, 0))
                handler.close_connection = True
                handler.connection.close()
                return
            elif action[0] == "status":
                headers = action[2] if len(action) > 2 else None
                body = action[3] if len(action) > 3 else {"error": "scripted"}
                handler._answer(action[1], body, headers)
                return
        given = handler.headers.get("Authorization", "")
        if not given.startswith("Bearer "):
            handler._answer(401, {"error": "a Bearer token is required"})
            return
        if not hmac.compare_digest(given[len("Bearer "):].encode(), self.token.encode()):
            handler._answer(403, {"error": "token refused"})
            return
        try:
            batch = json.loads(raw)
            records = validate(batch)
        except (ValueError, UnicodeDecodeError) as error:
            index = getattr(error, "index", None)
            handler._answer(422, {"error": str(error), "record_index": index})
            return
        accepted = duplicates = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for record in records:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (batch["station"], batch["epoch"], record["seq"], record["type"],
                     record["time"], json.dumps(record), time.time()))
                if cursor.rowcount:
                    accepted += 1
                else:
                    duplicates += 1
            self._db.execute("COMMIT")
            self.duplicates += duplicates
        handler._answer(200, {"accepted": accepted, "duplicates": duplicates})

    # -- for tests and the demo -------------------------------------------------------------
    def stored(self) -> list[tuple[str, str, int, str, dict]]:
        with self._lock:
            rows = self._db.execute("SELECT station, epoch, seq, type, body FROM records "
                                    "ORDER BY station, epoch, seq").fetchall()
        return [(station, epoch, seq, kind, json.loads(body))
                for station, epoch, seq, kind, body in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.receiver",
                                     description="gauge-agent reference receiver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--db", type=Path, default=Path("receiver.sqlite"))
    parser.add_argument("--token-file", type=Path, required=True,
                        help="file holding the token the gauges must send")
    parser.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate ...")
    parser.add_argument("--tls-key", type=Path, help="... and this private key")
    args = parser.parse_args(argv)
    try:
        token = args.token_file.read_text(encoding="utf-8").strip()
    except OSError as error:
        print(f"receiver: cannot read {args.token_file}: {error.strerror}", file=sys.stderr)
        return 1
    receiver = ReferenceReceiver(args.db, token, args.host, args.port, args.tls_cert, args.tls_key)
    print(f"receiver: listening on {receiver.url}, storing in {args.db}", file=sys.stderr,
          flush=True)
    try:
        receiver.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
