"""The daemon's local control channel, for the technician commands (agent/commands).

While the service runs it owns the sensor's port and the GPIO lines; a second process must not
fight it for them. So the daemon listens on a UNIX socket in `storage.runtime_dir`
(`control.sock`, mode 0660: the service user and its group, never the network), one JSON
request per line, JSON lines back:

    {"command": "hello"}              -> {"ok": true, "station": ..., "pid": ..., "version": ...}
    {"command": "read", "count": N}   -> {"sample": {...}} for each of the next N samples the
                                         daemon takes, then {"ok": true, "done": true}
    {"command": "reload"}             -> {"ok": true, "reloading": true}; the daemon reads its
                                         configuration and calibration again (as on SIGHUP)
    {"command": "maintenance", "minutes": N}  -> {"ok": true, "until": UTC or null}; readings
                                         flagged `maintenance` for N minutes (0: end it now)
    {"command": "retry-dead-letters"}  -> {"ok": true, "requeued": N}
    {"command": "siren-test", "pattern": NAME, "seconds": N, "quiet": false}
                                      -> sounds it while the client stays (see siren_test_handler)

Anything else gets {"ok": false, "error": "...", "message": "...", "values": {...}}: the
English words, and the message with its {names} and their values for a command to say it in
the technician's language (commands.common.daemon_error).

The sampling thread never waits for a client: each sample is offered to every reader's small
queue and a reader that does not keep up misses samples (counted in its last line), it never
delays one.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

from agent import __version__
from agent.i18n import N_
from agent.supervision import LoopThread, ThreadHealth
from agent.units import format_utc

if TYPE_CHECKING:  # the daemon imports this module
    from agent.config import Config
    from agent.daemon import Daemon
    from agent.outbox import Outbox

log = logging.getLogger("gauge-agent")

SOCKET_NAME = "control.sock"
MAX_CLIENTS = 4  # a technician's phone and a laptop, with room; more are turned away
REQUEST_LIMIT = 4096  # bytes of one request line
CLIENT_TIMEOUT_S = 10.0  # a client that neither asks nor reads for this long is dropped
READ_MAX_COUNT = 10_000
STILL_STARTING = N_("the daemon is still starting; try again in a moment")
FEED_QUEUE = 16  # samples a slow reader may fall behind before it misses some

Send = Callable[[dict], None]
Handler = Callable[[dict, Send], None]


def _whole(value: object, low: int, high: int) -> TypeGuard[int]:
    """A JSON whole number from `low` to `high` (true and false are not numbers here)."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


class RequestError(Exception):
    """A request the daemon cannot act on. `message` is marked N_() and its {names} come from
    `values`: the answer {"ok": false, "error": "...", "message": ..., "values": {...}} holds
    the English words (for any client) and the parts a command needs to say it in its own
    language (the daemon's language is the service's, not the technician's)."""

    def __init__(self, message: str, **values: object):
        self.message = message
        self.values = {name: str(value) for name, value in values.items()}
        super().__init__(message.format(**self.values))

    def answer(self) -> dict:
        return {"ok": False, "error": str(self), "message": self.message, "values": self.values}


class SampleFeed:
    """Samples from the sampling thread to the `read` clients. Lives as long as the process:
    it outlasts a reload, which builds a new Daemon."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: list[queue.Queue] = []

    def listening(self) -> bool:
        return bool(self._readers)  # read without the lock: a stale answer costs one sample

    def publish(self, sample: dict) -> None:
        """Never blocks: a full queue loses this sample for that reader."""
        with self._lock:
            readers = list(self._readers)
        for reader in readers:
            try:
                reader.put_nowait(sample)
            except queue.Full:
                pass

    def subscribe(self) -> queue.Queue:
        reader: queue.Queue = queue.Queue(FEED_QUEUE)
        with self._lock:
            self._readers.append(reader)
        return reader

    def unsubscribe(self, reader: queue.Queue) -> None:
        with self._lock:
            if reader in self._readers:
                self._readers.remove(reader)


def read_handler(feed: SampleFeed, sample_timeout_s: Callable[[], float]) -> Handler:
    """`read`: the next `count` samples as the daemon takes them."""

    def handle(request: dict, send: Send) -> None:
        count = request.get("count", 1)
        if not _whole(count, 1, READ_MAX_COUNT):
            raise RequestError(
                N_("count must be a whole number from 1 to {max}"), max=READ_MAX_COUNT
            )
        reader = feed.subscribe()
        try:
            for _ in range(count):
                timeout = sample_timeout_s()
                try:
                    sample = reader.get(timeout=timeout)
                except queue.Empty:
                    raise RequestError(
                        N_("no sample from the daemon in {seconds} s"), seconds=f"{timeout:.0f}"
                    ) from None
                send({"sample": sample})
        finally:
            feed.unsubscribe(reader)
        send({"ok": True, "done": True})

    return handle


SIREN_TEST_MAX_S = 120
SIREN_TEST_DEFAULT_S = 10
SIREN_TEST_BEAT_S = 0.5  # a progress line this often: how a vanished client is noticed


def default_test_pattern(config: Config) -> str:
    """What a siren test sounds without --pattern: the pattern of the highest warning (what
    the residents would hear), or the first configured one if that level is silent."""
    pattern = config.siren_pattern_for(len(config.alarm.levels))
    if pattern == "off":
        pattern = config.outputs.siren_patterns[0].name
    return pattern


def siren_test_handler(current_daemon: Callable[[], Daemon | None]) -> Handler:
    """`siren-test`: {"pattern": NAME or null, "seconds": N, "quiet": bool}. Answers
    {"ok": true, "testing": true, ...}, then a line every half second while it sounds, then
    {"ok": true, "done": true, "why": ...}. A client that goes away ends the test at once: the
    siren never keeps sounding for a technician who lost the connection."""

    def handle(request: dict, send: Send) -> None:
        daemon = current_daemon()
        if daemon is None:
            raise RequestError(STILL_STARTING)
        config = daemon.config
        pattern = request.get("pattern") or default_test_pattern(config)
        if not isinstance(pattern, str) or config.pattern(pattern) is None:
            names = ", ".join(p.name for p in config.outputs.siren_patterns)
            raise RequestError(
                N_("no siren pattern {pattern}; configured: {names}"),
                pattern=repr(pattern),
                names=names,
            )
        seconds = request.get("seconds", SIREN_TEST_DEFAULT_S)
        if not _whole(seconds, 1, SIREN_TEST_MAX_S):
            raise RequestError(
                N_("seconds must be a whole number from 1 to {max}"), max=SIREN_TEST_MAX_S
            )
        quiet = request.get("quiet") is True
        annunciator, clock = daemon.annunciator, daemon.clock
        warning = annunciator.start_test(clock(), pattern, seconds, quiet)
        if warning is not None:
            raise RequestError(
                N_("not now: a warning is up ({level}); the siren is the warning's"),
                level=warning,
            )
        try:
            send({"ok": True, "testing": True, "pattern": pattern, "seconds": seconds})
            while annunciator.testing(clock()):
                time.sleep(SIREN_TEST_BEAT_S)
                send({"testing": True})  # raises when the client has gone
            took_over = annunciator.warning > 0
            why = N_("a real warning took over") if took_over else N_("its time is up")
            send({"ok": True, "done": True, "why": why})
        finally:
            annunciator.end_test(clock(), N_("the technician ended it or went away"))

    return handle


MAINTENANCE_MAX_MINUTES = 720  # 12 hours: a forgotten "on" ends by the next morning


def maintenance_handler(set_minutes: Callable[[int], str | None]) -> Handler:
    """`maintenance`: {"minutes": N} flags readings for N minutes, {"minutes": 0} ends it.
    `set_minutes` applies it to the running daemon and returns when it ends (UTC) or None."""

    def handle(request: dict, send: Send) -> None:
        minutes = request.get("minutes")
        if not _whole(minutes, 0, MAINTENANCE_MAX_MINUTES):
            raise RequestError(
                N_("minutes must be a whole number from 0 (off) to {max}"),
                max=MAINTENANCE_MAX_MINUTES,
            )
        send({"ok": True, "until": set_minutes(minutes)})

    return handle


def retry_dead_letters_handler(outbox: Callable[[], Outbox | None]) -> Handler:
    """`retry-dead-letters`: every dead letter back in the queue; answers how many."""

    def handle(request: dict, send: Send) -> None:
        box = outbox()
        if box is None:
            raise RequestError(N_("this daemon has no outbox (the card could not be used)"))
        count = box.retry_dead_letters()
        if count is None:
            raise RequestError(N_("the outbox file cannot be used now (see `gauge-agent status`)"))
        send({"ok": True, "requeued": count})

    return handle


def reload_handler(request_reload: Callable[[], None]) -> Handler:
    """`reload`: read the configuration and calibration again, as SIGHUP does (a technician
    may not signal the service's process; the group may use this socket)."""

    def handle(request: dict, send: Send) -> None:
        request_reload()
        send({"ok": True, "reloading": True})

    return handle


class ControlServer:
    """Accepts on the control socket on a supervised thread; each client on a thread of its
    own (at most MAX_CLIENTS)."""

    def __init__(
        self,
        runtime_dir: Path,
        station: str,
        handlers: dict[str, Handler],
        health: ThreadHealth,
    ):
        self.path = Path(runtime_dir) / SOCKET_NAME
        self.station = station
        self.handlers = {"hello": self._hello, **handlers}
        self.stopping = threading.Event()
        self.clients = threading.Semaphore(MAX_CLIENTS)
        self.listener: socket.socket | None = None
        self.loop = LoopThread("control", self._accept, health, self.stopping)

    def start(self) -> bool:
        """Listen; False (logged) if the socket cannot be made. The gauge runs without it."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._remove_stale_socket()
            listener.bind(str(self.path))
            os.chmod(self.path, 0o660)  # the service user and its group (the technicians)
            listener.listen(MAX_CLIENTS)
            listener.settimeout(1.0)  # to see a stop
        except OSError as error:
            listener.close()
            log.error(
                "no control socket at %s (%s): technician commands cannot reach the daemon",
                self.path,
                error.strerror or error,
            )
            return False
        self.listener = listener
        self.loop.start()
        return True

    def ensure_running(self) -> bool:
        return self.listener is None or self.loop.ensure_running()

    def stop(self) -> None:
        self.stopping.set()
        if self.listener is not None:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() at once
            except OSError:
                pass
            self.listener.close()
            self.loop.join(2.0)
            self.path.unlink(missing_ok=True)

    def _remove_stale_socket(self) -> None:
        # The state lock makes this daemon the only one: a socket left here is a dead one's.
        try:
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()
        except FileNotFoundError:
            pass

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            connection, _ = self.listener.accept()
        except TimeoutError:
            return
        except OSError:
            if self.stopping.is_set():
                return
            raise
        if not self.clients.acquire(blocking=False):
            _answer(connection, RequestError(N_("busy: too many clients; try again")).answer())
            connection.close()
            return
        threading.Thread(
            target=self._serve, args=(connection,), name="control-client", daemon=True
        ).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            connection.settimeout(CLIENT_TIMEOUT_S)
            with connection:
                try:
                    request = _read_request(connection)
                    command = request.get("command")
                    handler = self.handlers.get(command) if isinstance(command, str) else None
                    if handler is None:
                        raise RequestError(
                            N_("unknown command {command}; known: {known}"),
                            command=repr(command),
                            known=", ".join(sorted(self.handlers)),
                        )
                    handler(request, lambda answer: _answer(connection, answer))
                except RequestError as error:
                    _answer(connection, error.answer())
        except OSError:
            pass  # the client went away (Ctrl-C, a dropped SSH session): nothing to do
        finally:
            self.clients.release()

    def _hello(self, request: dict, send: Send) -> None:
        send({"ok": True, "station": self.station, "pid": os.getpid(), "version": __version__})


def _read_request(connection: socket.socket) -> dict:
    data = b""
    while b"\n" not in data:
        chunk = connection.recv(REQUEST_LIMIT)
        if not chunk:
            break
        data += chunk
        if len(data) > REQUEST_LIMIT:
            raise RequestError(
                "a request is one line of at most {limit} bytes", limit=REQUEST_LIMIT
            )
    try:
        request = json.loads(data.split(b"\n", 1)[0].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RequestError("a request is one line of JSON") from None
    if not isinstance(request, dict):
        raise RequestError('a request is a JSON object: {{"command": ...}}')
    return request


def _answer(connection: socket.socket, answer: dict) -> None:
    connection.sendall((json.dumps(answer, allow_nan=False) + "\n").encode("utf-8"))


def request(runtime_dir: Path, message: dict, timeout_s: float) -> socket.socket | None:
    """The client side: connect and send `message`; None when no daemon listens there. The
    caller reads the answer lines from the returned socket (`answers`)."""
    path = Path(runtime_dir) / SOCKET_NAME
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout_s)
    try:
        client.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        client.close()
        return None
    except OSError:
        client.close()
        raise
    client.sendall((json.dumps(message) + "\n").encode("utf-8"))
    return client


def answers(client: socket.socket):
    """The daemon's answer lines, parsed, until it closes the connection."""
    with client, client.makefile("rb") as lines:
        for line in lines:
            yield json.loads(line)


def sample_body(
    measurement,
    *,
    wall_time: float,
    raw_unit: str,
    unit_to_m: float,
    value_kind: str,
    temperature_c: float | None,
) -> dict:
    """One sample as `gauge-agent read --json` prints it (DESIGN.md), from the daemon or from
    the command's own sensor: the raw value, what it means in metres, the level."""
    raw = measurement.raw
    metres = None if raw is None else round(raw * unit_to_m, 4)
    body = {
        "time": format_utc(wall_time),
        "raw": raw,
        "raw_unit": raw_unit,
        "temperature_c": temperature_c,
        "distance_m" if value_kind == "distance" else "depth_m": metres,
        "level_m": None if measurement.level_m is None else round(measurement.level_m, 4),
        "smoothed_m": None if measurement.smoothed_m is None else round(measurement.smoothed_m, 4),
        "ok": measurement.accepted,
        "reason": None if measurement.accepted else measurement.reason,
    }
    return body
