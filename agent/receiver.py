"""The reference receiver: what the city's platform must do with gauge-agent's batches.

Standard library only (`http.server` + `sqlite3`) so anyone can run it, and written to be
copied: every rule below is one the platform needs too (docs/upstream.md lists them).

    python -m agent.receiver --port 8080 --db receiver.sqlite --token-file tokens

The token file maps each station to its own token, one `station-id token` per line (`#`
starts a comment). A gauge can post only as the station its token belongs to.

- Authentication first: `Authorization: Bearer <token>` is checked before the body is read
  (401 without a token, 403 for an unknown one or a batch for another station).
- `Content-Length` is required (411) and bounded (413); a negative or unreadable one is 400.
- Each connection has a socket timeout (a client that trickles or goes quiet is dropped), TLS
  handshakes happen on the worker thread with a timeout (never in the accept loop), and the
  workers are a bounded pool: past it, new connections get 503 at once.
- Every bad input gets a 4xx with a JSON reason (`{"error": ..., "record_index": ...}`), never a
  dropped connection: malformed JSON and JSON nested too deep are 400, a batch that breaks the
  format is 422 with the index of the first bad record (the gauge splits around it).
- Whole numbers are range-checked before SQLite sees them; every transaction is closed whatever
  happens; stored records are deduplicated on `(station, epoch, seq)`; the `Idempotency-Key`s
  remembered for the tests are bounded.
- `GET /health`: 200.

For tests, `ReferenceReceiver.script` holds scripted faults consumed one per request: an HTTP
status with headers (and a body), a hang, or a connection reset.
"""

from __future__ import annotations

import argparse
import hmac
import json
import math
import re
import socket
import sqlite3
import ssl
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from agent.errors import UnreadableFile
from agent.files import read_small_file

MAX_BODY_BYTES = 8 * 1024 * 1024
SOCKET_TIMEOUT_S = 10.0  # per read or write on a connection
TLS_HANDSHAKE_TIMEOUT_S = 5.0
WORKERS = 16  # connections served at once; more get 503
REMEMBERED_KEYS = 1000  # Idempotency-Keys kept for the tests
MAX_JSON_DEPTH = 20  # a batch is 3 levels deep; deeper is not a batch
SQLITE_MAX_INTEGER = 2**63 - 1
RECORD_TYPES = {"reading", "event", "heartbeat"}
EVENT_KINDS = {
    "level",
    "rate",
    "fault",
    "siren",
    "outbox",
    "maintenance",
    "calibration",
    "siren_test",
}
STATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # as the gauge's station.id
EPOCH = re.compile(r"[0-9a-f]{32}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    station TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, time TEXT NOT NULL, body TEXT NOT NULL, received REAL NOT NULL,
    PRIMARY KEY (station, epoch, seq)) WITHOUT ROWID;
"""


class BatchInvalid(ValueError):
    def __init__(self, message: str, index: int | None = None, status: int = 422):
        super().__init__(message)
        self.index = index
        self.status = status


def read_token_file(path: Path) -> dict[str, str]:
    """`station-id token` per line. Refuses an empty file, a line that is not a pair, a station
    id the gauge could not have, and a token used for two stations."""
    tokens: dict[str, str] = {}
    problems = []
    # Only a small regular file: a FIFO or a device given by mistake is an error, not a hang.
    text = read_small_file(path).decode("utf-8-sig")
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            problems.append(f"{path}:{number}: must be `station-id token`")
            continue
        station, token = parts
        if not STATION_ID.fullmatch(station):
            problems.append(f"{path}:{number}: {station!r} is not a station id")
        elif station in tokens:
            problems.append(f"{path}:{number}: station {station!r} has a token already")
        elif token in tokens.values():
            problems.append(f"{path}:{number}: that token is already another station's")
        else:
            tokens[station] = token
    if not tokens and not problems:
        problems.append(
            f"{path}: no `station-id token` line: a receiver that accepts any"
            " token would take alarms from anyone"
        )
    if problems:
        raise ValueError("\n".join(problems))
    return tokens


def _number_or_null(record: dict, key: str, index: int) -> None:
    value = record.get(key)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    ):
        raise BatchInvalid(f"records[{index}].{key} must be a number or null", index)


def _depth(value, limit: int) -> int:
    """How deep the JSON nests, stopping once it is over `limit`."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((item, depth + 1) for item in node.values())
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
    return deepest


def parse_batch(raw: bytes) -> object:
    try:
        text = raw.decode("utf-8")
        batch = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BatchInvalid("the body is not JSON (UTF-8)", status=400) from None
    if _depth(batch, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise BatchInvalid(f"the body nests deeper than {MAX_JSON_DEPTH} levels", status=400)
    return batch


def validate(batch: object) -> list[dict]:
    """The checks a platform should make. Returns the records."""
    if not isinstance(batch, dict):
        raise BatchInvalid("the body must be a JSON object")
    station = batch.get("station")
    if not isinstance(station, str) or not STATION_ID.fullmatch(station):
        raise BatchInvalid("station must be a station id (letters, digits, '.', '_', '-')")
    epoch = batch.get("epoch")
    if not isinstance(epoch, str) or not EPOCH.fullmatch(epoch):
        raise BatchInvalid("epoch must be 32 lower-case hex digits")
    records = batch.get("records")
    if not isinstance(records, list) or not records:
        raise BatchInvalid("records must be a non-empty list")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise BatchInvalid(f"records[{index}] must be an object", index)
        seq = record.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= SQLITE_MAX_INTEGER:
            raise BatchInvalid(
                f"records[{index}].seq must be a whole number from 1 to {SQLITE_MAX_INTEGER}", index
            )
        if record.get("type") not in RECORD_TYPES:
            raise BatchInvalid(
                f"records[{index}].type must be one of {sorted(RECORD_TYPES)}", index
            )
        moment = record.get("time")
        try:
            if not isinstance(moment, str) or len(moment) > 40:
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
                raise BatchInvalid(
                    f"records[{index}].kind must be one of {sorted(EVENT_KINDS)}", index
                )
    return records


class BoundedServer(HTTPServer):
    """One worker thread per connection, at most WORKERS at once; TLS handshakes on the worker,
    with a timeout, so one idle client cannot hold up the others."""

    daemon_threads = True

    def __init__(self, address, handler, tls_context: ssl.SSLContext | None = None):
        super().__init__(address, handler)
        self.tls_context = tls_context
        self.slots = threading.BoundedSemaphore(WORKERS)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            # On a short thread of its own: the accept loop must not wait on a stranger.
            threading.Thread(target=self._refuse_busy, args=(request,), daemon=True).start()
            return
        thread = threading.Thread(target=self._work, args=(request, client_address), daemon=True)
        thread.start()

    def _work(self, request, client_address):
        try:
            request.settimeout(SOCKET_TIMEOUT_S)
            if self.tls_context is not None:
                request.settimeout(TLS_HANDSHAKE_TIMEOUT_S)
                request = self.tls_context.wrap_socket(
                    request, server_side=True, do_handshake_on_connect=False
                )
                request.do_handshake()
                request.settimeout(SOCKET_TIMEOUT_S)
            self.finish_request(request, client_address)
        except (OSError, ssl.SSLError):
            pass  # a client that vanished, stalled or spoke no TLS: nothing to answer
        finally:
            self.shutdown_request(request)
            self.slots.release()

    @staticmethod
    def _refuse_busy(request):
        """503 at once; then read briefly what the client sent, so that closing does not
        reset the connection before it has read the answer."""
        try:
            request.settimeout(0.5)
            body = json.dumps({"error": "receiver busy"}).encode()
            request.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json"
                b"\r\nContent-Length: %d\r\nRetry-After: 5\r\nConnection: close"
                b"\r\n\r\n%s" % (len(body), body)
            )
            request.shutdown(socket.SHUT_WR)
            request.recv(65536)
        except OSError:
            pass
        finally:
            request.close()


class ReferenceReceiver:
    """The server, runnable in a thread (tests) or as a program."""

    def __init__(
        self,
        db_path: Path,
        tokens: Mapping[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ):
        if not tokens:
            raise ValueError("a receiver needs at least one station's token")
        self.db_path = Path(db_path)
        self.tokens = dict(tokens)  # station -> token
        self.script: deque[tuple] = (
            deque()
        )  # ("status", code, headers[, body]) | ("hang", s) | ("reset",)
        self.requests = 0
        self.duplicates = 0
        self.idempotency_keys: deque[str] = deque(maxlen=REMEMBERED_KEYS)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass  # quiet: tests and the demo print what matters

            def do_GET(self):
                if self.path == "/health":
                    self._answer(200, {"ok": True})
                else:
                    self._answer(404, {"error": "not found"})

            def do_POST(self):
                try:
                    receiver._handle(self)
                except (OSError, ssl.SSLError):
                    self.close_connection = True  # the client went away
                except Exception as error:
                    self.close_connection = True
                    self._answer(500, {"error": f"receiver error: {type(error).__name__}"})

            def _answer(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        context = None
        scheme = "http"
        if tls_cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_cert, tls_key)
            scheme = "https"
        self.server = BoundedServer((host, port), Handler, context)
        self.port = self.server.server_address[1]
        self.url = f"{scheme}://{host}:{self.port}/ingest"
        self._thread: threading.Thread | None = None

    # -- running ----------------------------------------------------------------------------
    def start(self) -> ReferenceReceiver:
        self._thread = threading.Thread(
            target=self.server.serve_forever, daemon=True, name="receiver"
        )
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
    def _station_of(self, authorization: str) -> str | None:
        """The station whose token this is (compared in constant time), or None."""
        given = authorization[len("Bearer ") :].encode()
        found = None
        for station, token in self.tokens.items():
            if hmac.compare_digest(given, token.encode()):
                found = station
        return found

    def _handle(self, handler) -> None:
        with self._lock:
            self.requests += 1
            action = self.script.popleft() if self.script else None
            self.idempotency_keys.append(handler.headers.get("Idempotency-Key", ""))
        if action is not None and action[0] == "reset":
            # Close with RST instead of an answer, as a failing proxy does.
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.close_connection = True
            handler.connection.close()
            return
        # Authentication before the body: a stranger gets nothing read and nothing stored.
        authorization = handler.headers.get("Authorization", "")
        if not authorization.startswith("Bearer "):
            handler.close_connection = True
            handler._answer(401, {"error": "a Bearer token is required"})
            return
        station = self._station_of(authorization)
        if station is None:
            handler.close_connection = True
            handler._answer(403, {"error": "token refused"})
            return
        length_header = handler.headers.get("Content-Length")
        if length_header is None or handler.headers.get("Transfer-Encoding"):
            handler.close_connection = True
            handler._answer(411, {"error": "Content-Length is required"})
            return
        if not length_header.strip().isdigit():
            handler.close_connection = True
            handler._answer(400, {"error": "Content-Length must be a whole number of bytes"})
            return
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            handler.close_connection = True
            handler._answer(413, {"error": f"batch over {MAX_BODY_BYTES} bytes"})
            return
        raw = handler.rfile.read(length)
        if len(raw) < length:
            handler.close_connection = True
            handler._answer(400, {"error": "the body is shorter than its Content-Length"})
            return
        if action is not None:
            if action[0] == "hang":
                time.sleep(action[1])
            elif action[0] == "status":
                headers = action[2] if len(action) > 2 else None
                body = action[3] if len(action) > 3 else {"error": "scripted"}
                handler._answer(action[1], body, headers)
                return
        try:
            batch = parse_batch(raw)
            records = validate(batch)
            assert isinstance(batch, dict)  # validate() refuses anything else
        except BatchInvalid as error:
            handler._answer(error.status, {"error": str(error), "record_index": error.index})
            return
        if batch["station"] != station:
            handler._answer(
                403, {"error": f"this token is for station {station!r}, not {batch['station']!r}"}
            )
            return
        accepted, duplicates = self._store(batch, records)
        handler._answer(200, {"accepted": accepted, "duplicates": duplicates})

    def _store(self, batch: dict, records: list[dict]) -> tuple[int, int]:
        accepted = duplicates = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for record in records:
                    cursor = self._db.execute(
                        "INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            batch["station"],
                            batch["epoch"],
                            record["seq"],
                            record["type"],
                            record["time"],
                            json.dumps(record),
                            time.time(),
                        ),
                    )
                    if cursor.rowcount:
                        accepted += 1
                    else:
                        duplicates += 1
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")  # never leave the connection in a transaction
                raise
            self.duplicates += duplicates
        return accepted, duplicates

    # -- for tests and the demo -------------------------------------------------------------
    def stored(self) -> list[tuple[str, str, int, str, dict]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT station, epoch, seq, type, body FROM records ORDER BY station, epoch, seq"
            ).fetchall()
        return [
            (station, epoch, seq, kind, json.loads(body))
            for station, epoch, seq, kind, body in rows
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.receiver", description="gauge-agent reference receiver"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--db", type=Path, default=Path("receiver.sqlite"))
    parser.add_argument(
        "--token-file",
        type=Path,
        required=True,
        help="`station-id token` per line: each gauge's own token",
    )
    parser.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate ...")
    parser.add_argument("--tls-key", type=Path, help="... and this private key")
    args = parser.parse_args(argv)
    try:
        tokens = read_token_file(args.token_file)
    except UnreadableFile as error:
        print(f"receiver: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"receiver: {error}", file=sys.stderr)
        return 1
    receiver = ReferenceReceiver(args.db, tokens, args.host, args.port, args.tls_cert, args.tls_key)
    print(
        f"receiver: listening on {receiver.url} for {len(tokens)} station(s), storing in {args.db}",
        file=sys.stderr,
        flush=True,
    )
    try:
        receiver.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
