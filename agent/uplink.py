"""The uploader thread: outbox -> upstream, with store-and-forward retry.

It runs on its own supervised thread and talks to the outbox through its own database
connection, so a hanging or hostile server can never delay a sample, the alarm engine or the
siren. A batch counts as delivered only on the upstream's own success answer to the POST it was
sent with. Each answer maps to one action (as weewx's uploaders do):

| answer                                  | action |
| --------------------------------------- | ------ |
| 2xx to the POST itself                  | the whole batch is acknowledged and deleted (native format: unless the answer is a web page, which a portal sends, not the upstream: retried) |
| network error, timeout, no complete answer within `request_deadline_s`, 408, 429, 5xx | retry the same batch: full-jitter exponential backoff up to `backoff_max_s`, or the server's `Retry-After` (whole seconds or an HTTP date; at least 1 s, at most `retry_after_max_s`) |
| 3xx                                     | not followed (a redirected POST may arrive as a GET, or at another host, and its 2xx would delete data that was never stored): an error naming the target, retried |
| 400, 413, 422                           | split the batch in halves until the refused records are alone; each of those goes to the dead letters, the rest is delivered. After `REFUSING_AFTER` records refused in a row with nothing accepted, fault `upstream_refusing`: the upstream refuses everything (a gateway on a wrong path), so records stay queued and are retried until it accepts one |
| 401, 403                                | fault `auth`; pause `auth_pause_s`, read the token again, retry; nothing is dropped |
| anything else                           | logged as unexpected and retried like a 5xx |

A record that cannot be encoded goes to the dead letters with the reason; it never blocks the
queue. At most `ANSWER_BYTES` of an answer are read. A new alarm event cuts a back-off short, and
goes first. `stop()` cuts the connection: SIGTERM never waits on the network.

The token comes from `uplink.token_file` or `$CREDENTIALS_DIRECTORY/token`, is read as UTF-8 (a
Windows BOM is dropped), must be one line of printable characters, and never appears in a log
line, a status or a dead letter.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import socket
import stat
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tenacity import (Retrying, retry_if_result, stop_any, stop_when_event_set,
                      wait_random_exponential)
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from agent.config import UplinkConfig, is_loopback_host
from agent.errors import UnreadableFile
from agent.files import read_small_file
from agent.outbox import EVENT, Outbox, Record
from agent.supervision import LoopThread, ThreadHealth
from agent.wire import INFLUX_CONTENT_TYPE, NATIVE_CONTENT_TYPE, encode_influx, encode_native

log = logging.getLogger("gauge-agent")

SPLIT_STATUSES = {400, 413, 422}
AUTH_STATUSES = {401, 403}
ANSWER_BYTES = 4096          # of an answer's body; the rest is discarded unread
RETRY_AFTER_FLOOR_S = 1.0    # a Retry-After of 0, in the past or negative waits this long
REFUSING_AFTER = 5           # records refused in a row, none accepted: the upstream refuses all
# What the unit's SetCredential= hands over when /etc/gauge-agent/token does not exist (systemd
# 252 refuses an empty value): no token, so the gauge stores its readings until one is installed.
NO_TOKEN_PLACEHOLDER = "no-token-installed"
TOKEN_FILE_LIMIT = 64 * 1024   # a token is a line; a bigger file is the wrong file


def redact_url(url: str) -> str:
    """The URL without user:password@ and without a query (it may carry credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def mask(text: str, secret: str | None) -> str:
    """`text` with every occurrence of the secret replaced (a server may echo the request)."""
    if not secret or not text:
        return text
    return text.replace(secret, "***")


class TokenSource:
    def __init__(self, token_file: str):
        self.token_file = token_file
        self.problem: str | None = None     # why the file's token cannot be used
        self._warned_mode = False

    def path(self) -> Path | None:
        if self.token_file:
            return Path(self.token_file)
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        return Path(credentials) / "token" if credentials else None

    def read(self) -> str | None:
        """The token, or None (no token: posts go without one). `problem` says why a token
        file that exists cannot be used; the token itself is never in it."""
        self.problem = None
        path = self.path()
        if path is None:
            return None
        try:
            raw = read_small_file(path, TOKEN_FILE_LIMIT)
        except UnreadableFile as error:
            if not path.exists():
                log.error("cannot read the upstream token: %s", error)
                return None
            # There, but a FIFO, a device, too large or not permitted: a technician must look.
            return self._refuse(f"the token file {error}")
        try:
            text = raw.decode("utf-8-sig")   # -sig: a BOM from Windows Notepad
        except UnicodeDecodeError:
            return self._refuse(f"the token file {path} is not UTF-8 text")
        self._check_mode(path)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            return None
        if len(lines) > 1:
            return self._refuse(f"the token file {path} has {len(lines)} lines; it must hold"
                                " the token alone, on one line")
        token = lines[0]
        if not token.isprintable() or not token.isascii():
            return self._refuse(f"the token file {path} holds characters that cannot go in an"
                                " HTTP header (not printable ASCII)")
        if token == NO_TOKEN_PLACEHOLDER:
            log.warning("no upstream token is installed (/etc/gauge-agent/token): readings are"
                        " kept on the card and sent once it is")
            return None
        return token

    def _refuse(self, problem: str) -> None:
        self.problem = problem
        log.error("%s: fault auth until it is fixed", problem)
        return None

    def _check_mode(self, path: Path) -> None:
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if self._warned_mode or (credentials and str(path).startswith(credentials)):
            return   # systemd's own copy: read-only, this user only
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            return
        if mode & 0o077:
            self._warned_mode = True
            log.warning("the token file %s can be read by others (mode %04o): chmod 600 it",
                        path, mode)


@dataclass
class Outcome:
    action: str                    # "ok" | "retry" | "split" | "auth" | "stopped"
    status: int | None = None
    retry_after_s: float | None = None
    detail: str = ""


def looks_like_html(answer: str) -> bool:
    head = answer.lstrip()[:64].lower()
    return head.startswith(("<!doctype html", "<html", "<head", "<body"))


def parse_retry_after(value: str | None, now: float, limit: float,
                      floor: float = RETRY_AFTER_FLOOR_S) -> float | None:
    """Whole seconds or an HTTP date (RFC 9110), kept within [floor, limit]; anything else
    (a negative or fractional number, NaN, garbage) is ignored: the normal back-off applies."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit() and value.isascii():
        seconds = float(int(value))
    else:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment is None or moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, floor), limit)


class CuttableAdapter(HTTPAdapter):
    """requests' adapter with one addition: `cut()` shuts every socket it has open, so a
    request can be ended from another thread (a deadline, a stop) however the server trickles.
    Connection timeouts bound each wait; this bounds the whole request."""

    def __init__(self, *args, **kwargs):
        self._sockets: weakref.WeakSet = weakref.WeakSet()
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        sockets = self._sockets

        def remembering(base):
            class Connection(base):
                def connect(self):
                    super().connect()
                    sockets.add(self.sock)
            return Connection

        http_pool = type("Pool", (HTTPConnectionPool,),
                         {"ConnectionCls": remembering(HTTPConnection)})
        https_pool = type("TLSPool", (HTTPSConnectionPool,),
                          {"ConnectionCls": remembering(HTTPSConnection)})
        self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}

    def cut(self) -> None:
        for sock in list(self._sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Uploader:
    def __init__(self, outbox: Outbox, config: UplinkConfig, station: str,
                 session: requests.Session | None = None,
                 wall: Callable[[], float] = time.time, health: ThreadHealth | None = None):
        self.outbox = outbox
        self.config = config
        self.station = station
        self.adapter = CuttableAdapter()
        self.session = session or requests.Session()
        self.session.mount("http://", self.adapter)
        self.session.mount("https://", self.adapter)
        self.wall = wall
        self.tokens = TokenSource(config.token_file)
        self.token = self.tokens.read()
        self.stopping = threading.Event()
        self.wake = threading.Event()       # new records worth looking at now
        self.urgent = threading.Event()     # a new alarm event: cut any back-off short
        # A warning or the rate alarm is up: every reading goes at once. In calm times they
        # wait for a full batch or `batch_s` (one request and one acknowledgement a minute
        # instead of one per reading: half the card writes and CPU of uploading).
        self.live = threading.Event()
        self._batch_due: float | None = None   # when the waiting calm batch goes anyway
        self.loop = LoopThread("uplink", self._step, health or ThreadHealth(), self.stopping)
        self.auth_fault = False
        self.refusing = False               # fault upstream_refusing
        self.refused_in_a_row = 0
        self.last_upload: float | None = None
        self.last_error: str | None = None
        self.delivered = 0
        self.dead_lettered = 0
        self._failing = False
        self._deadline_hit = False
        self._warned_unacknowledged = False
        if config.format == "influx":
            base = config.url.rstrip("/")
            self.post_url = f"{base}/write"
            self.params = {"db": config.influx_db, "precision": "ns"}
        else:
            self.post_url = config.url
            self.params = {}
        self.shown_url = redact_url(config.url)
        self.insecure = self._insecure_settings()

    def _insecure_settings(self) -> list[str]:
        insecure = []
        parts = urlsplit(self.config.url)
        if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
            insecure.append("plain http: the token and the readings cross the network unencrypted")
        if not self.config.verify_tls:
            insecure.append("verify_tls = false: any server can pose as the upstream")
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        for reason in insecure:
            log.warning("uplink to %s: %s", self.shown_url, reason)
        return insecure

    # -- thread ------------------------------------------------------------------------------
    def start(self) -> None:
        self.loop.start()

    def ensure_running(self) -> bool:
        return self.loop.ensure_running()

    def is_alive(self) -> bool:
        return self.loop.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop, cutting any request in flight: never waits on the network."""
        self.stopping.set()
        self.wake.set()
        self.urgent.set()
        self.adapter.cut()
        self.loop.join(timeout)

    def new_reading(self, live: bool) -> None:
        """The sampling thread stored a reading; `live` while a warning or the rate alarm is
        up. Never blocks."""
        if live:
            self.live.set()
            self.wake.set()
            return
        self.live.clear()
        depth = self.outbox.stats()["depth"]
        if depth is not None and depth >= self.config.batch_max:
            self.wake.set()          # a full batch goes without waiting for batch_s

    def _step(self) -> None:
        self.urgent.clear()
        batch = self.outbox.next_batch(self.config.batch_max)
        if not batch:
            self._batch_due = None
            self.wake.wait(1.0)
            self.wake.clear()
            return
        wait_s = self._calm_wait(batch)
        if wait_s > 0:
            # An alarm event, a warning or a full batch wakes it, but may be woken before the
            # writer has committed what woke it: so look again every second anyway.
            self.wake.wait(min(wait_s, 1.0))
            self.wake.clear()
            return
        self._batch_due = None
        self.deliver(batch)

    def _calm_wait(self, batch: list[Record]) -> float:
        """How long `batch` may still wait to fill: 0 to send it now. Alarm events, a batch
        whose records already waited `batch_s`, a full batch and anything while `live` go at
        once."""
        batch_s = self.config.batch_s
        if (batch_s <= 0 or self.live.is_set() or len(batch) >= self.config.batch_max
                or batch[0].type == EVENT):
            return 0.0
        now = time.monotonic()
        if self._batch_due is None:
            self._batch_due = now + batch_s
        return max(0.0, self._batch_due - now)

    # -- delivery ----------------------------------------------------------------------------
    def deliver(self, batch: list[Record]) -> bool:
        """Deliver `batch`, splitting around refused records. True when every record in it
        was delivered or dead-lettered; False when it stopped early (stopping, or an alarm
        event goes first), and then the rest of the batch waits: records never overtake."""
        while not self.stopping.is_set():
            outcome = self._send_until_answered(batch)
            if outcome.action == "ok":
                self.outbox.ack([record.seq for record in batch], self._epoch_of(batch))
                self.delivered += len(batch)
                self.last_upload = self.wall()
                self._recovered()
                return True
            if outcome.action == "auth":
                self._auth_failed(outcome)
                if self.urgent.is_set():
                    return False    # an alarm event goes first; then this batch again
                continue
            if outcome.action == "split":
                if self.refusing and outcome.status is not None:
                    # Everything is refused: keep the records and wait for the upstream.
                    self._failed(outcome, self.config.backoff_max_s)
                    self._pause(self.config.backoff_max_s)
                    if self.urgent.is_set():
                        return False
                    continue
                if len(batch) == 1:
                    self._dead_letter(batch[0], outcome)
                    return True
                middle = len(batch) // 2
                return self.deliver(batch[:middle]) and self.deliver(batch[middle:])
            return False  # stopped, or an alarm event came and goes first
        return False

    def _dead_letter(self, record: Record, outcome: Outcome) -> None:
        self.outbox.dead_letter(record, outcome.status, outcome.detail)
        self.dead_lettered += 1
        log.error("upstream refused record seq %d (%s %s): moved to dead letters",
                  record.seq, outcome.status, outcome.detail[:200])
        if outcome.status is None:
            return   # our own encoding, not the upstream
        self.refused_in_a_row += 1
        if self.refused_in_a_row >= REFUSING_AFTER and not self.refusing:
            self.refusing = True
            log.error("upstream %s refused the last %d records and accepted none: fault"
                      " upstream_refusing; the rest stays queued until it accepts one",
                      self.shown_url, self.refused_in_a_row)

    def _send_until_answered(self, batch: list[Record]) -> Outcome:
        """POST until the answer is not "retry": tenacity, full jitter, Retry-After honoured.
        Stops early (Outcome "stopped") when stopping, or when an alarm event must go first."""
        backoff = wait_random_exponential(multiplier=1.0, max=self.config.backoff_max_s)

        def wait(retry_state) -> float:
            outcome: Outcome = retry_state.outcome.result()
            if outcome.retry_after_s is not None:
                return outcome.retry_after_s
            return max(RETRY_AFTER_FLOOR_S, backoff(retry_state))

        def before_sleep(retry_state) -> None:
            outcome: Outcome = retry_state.outcome.result()
            self._failed(outcome, retry_state.next_action.sleep)

        retrying = Retrying(retry=retry_if_result(lambda outcome: outcome.action == "retry"),
                            wait=wait, stop=stop_any(stop_when_event_set(self.stopping),
                                                     stop_when_event_set(self.urgent)),
                            sleep=self._pause, before_sleep=before_sleep,
                            retry_error_callback=lambda state: Outcome("stopped"))
        return retrying(self._post, batch)

    def _pause(self, seconds: float) -> None:
        """Wait, but wake for a stop or a new alarm event."""
        deadline = time.monotonic() + seconds
        while not (self.stopping.is_set() or self.urgent.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.urgent.wait(min(remaining, 1.0))

    def _encode(self, batch: list[Record]) -> tuple[bytes, str]:
        if self.config.format == "influx":
            return encode_influx(self.station, batch), INFLUX_CONTENT_TYPE
        return encode_native(self.station, self._epoch_of(batch), batch), NATIVE_CONTENT_TYPE

    def _epoch_of(self, batch: list[Record]) -> str | None:
        """The epoch of the file the batch was read from (the outbox may have replaced a
        damaged file since): a record always goes, and is acknowledged, as what it is."""
        return batch[0].epoch or self.outbox.epoch

    def _post(self, batch: list[Record]) -> Outcome:
        if self.urgent.is_set() or self.stopping.is_set():
            return Outcome("stopped")   # an alarm event came during the back-off: it goes first
        try:
            body, content_type = self._encode(batch)
        except (ValueError, TypeError) as error:
            return Outcome("split", None, detail=f"cannot be encoded: {error}"[:300])
        if self.tokens.problem is not None:
            return Outcome("auth", None, detail=self.tokens.problem)
        headers = {"Content-Type": content_type,
                   "Idempotency-Key": f"{self.station}:{self._epoch_of(batch)}:"
                                      f"{batch[0].seq}-{batch[-1].seq}:{len(batch)}"}
        auth = None
        if self.token:
            if self.config.format == "influx" and ":" in self.token:
                auth = tuple(self.token.split(":", 1))   # InfluxDB 1.x user:password
            else:
                headers["Authorization"] = f"Bearer {self.token}"
        verify: bool | str = self.config.verify_tls
        if verify and self.config.ca_bundle:
            verify = self.config.ca_bundle
        self._deadline_hit = False
        timer = threading.Timer(self.config.request_deadline_s, self._deadline)
        timer.daemon = True
        timer.start()
        try:
            response = self.session.post(
                self.post_url, params=self.params, data=body, headers=headers, auth=auth,
                timeout=(self.config.connect_timeout_s, self.config.read_timeout_s),
                verify=verify, allow_redirects=False, stream=True)
            try:
                status = response.status_code
                answer = self._read_answer(response)
                location = response.headers.get("Location", "")
                retry_after_header = response.headers.get("Retry-After")
            finally:
                response.close()
        except requests.Timeout:
            return Outcome("retry", detail="no answer within the timeout")
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
            if self._deadline_hit:
                return Outcome("retry", detail="no complete answer within"
                                               f" {self.config.request_deadline_s:g} s")
            if self.stopping.is_set():
                return Outcome("stopped")
            return Outcome("retry", detail=f"connection failed ({type(error).__name__})")
        finally:
            timer.cancel()
        detail = mask(answer, self.token)[:300] if status >= 300 else ""
        if 200 <= status < 300 and self.config.format == "native" and looks_like_html(answer):
            # A web page is never the upstream's acknowledgement: a SIM whose data quota ran
            # out, a captive portal or a proxy answers for it, and the batch would be lost.
            return Outcome("retry", status, detail=f"answered HTTP {status} with a web page,"
                                                   " not an acknowledgement (a captive portal,"
                                                   " a quota page or a proxy?); kept, retried")
        if 200 <= status < 300:
            self._check_acknowledgement(status, answer)
            return Outcome("ok", status)
        if 300 <= status < 400:
            target = redact_url(location) if location else "nowhere"
            return Outcome("retry", status, detail=f"redirected to {target}; not followed (a"
                                                   " POST must reach the upstream itself: set"
                                                   " uplink.url to the final address)")
        if status in AUTH_STATUSES:
            return Outcome("auth", status, detail=detail)
        if status in SPLIT_STATUSES:
            return Outcome("split", status, detail=detail)
        retry_after = parse_retry_after(retry_after_header, self.wall(),
                                        self.config.retry_after_max_s)
        if not (status in (408, 429) or status >= 500):
            detail = f"unexpected answer; retrying. {detail}"
        return Outcome("retry", status, retry_after, detail)

    def _check_acknowledgement(self, status: int, answer: str) -> None:
        """The contract: any 2xx accepts the batch. A native upstream also says what it took;
        a 2xx without that is worth one warning (a portal or a proxy may answer for it)."""
        if self.config.format != "native" or self._warned_unacknowledged:
            return
        try:
            acknowledged = isinstance(json.loads(answer).get("accepted"), int)
        except (ValueError, AttributeError):
            acknowledged = False
        if not acknowledged:
            self._warned_unacknowledged = True
            log.warning("upstream %s answered HTTP %d without the acknowledgement"
                        " docs/upstream.md describes ({\"accepted\": N}): if a proxy or a"
                        " captive portal answers in its place, readings are lost; check"
                        " uplink.url", self.shown_url, status)

    def _deadline(self) -> None:
        self._deadline_hit = True
        self.adapter.cut()

    @staticmethod
    def _read_answer(response: requests.Response) -> str:
        """At most ANSWER_BYTES of the body: a huge error page must not fill the memory of the
        process that drives the siren."""
        data = response.raw.read(ANSWER_BYTES, decode_content=True) or b""
        return data.decode("utf-8", errors="replace")

    # -- state and logging -------------------------------------------------------------------
    def _failed(self, outcome: Outcome, sleep_s: float) -> None:
        what = f"HTTP {outcome.status}" if outcome.status else outcome.detail
        if outcome.status and outcome.detail and outcome.status < 400:
            # 2xx/3xx: the gauge's own explanation. A server's error page stays out of it.
            what = f"HTTP {outcome.status}, {' '.join(outcome.detail.split())}"
        changed = f"{what}"[:300] != self.last_error
        self.last_error = f"{what}"[:300]
        # One line per change of what goes wrong, then quiet at debug level: a server that
        # keeps failing must not fill the card with the same line.
        log.log(logging.WARNING if changed or not self._failing else logging.DEBUG,
                "upload to %s failed (%s); retrying in %.0f s", self.shown_url, what, sleep_s)
        self._failing = True

    def _recovered(self) -> None:
        if self._failing or self.auth_fault or self.refusing:
            log.info("upload to %s works again", self.shown_url)
        self._failing = False
        self.auth_fault = False
        self.refusing = False
        self.refused_in_a_row = 0
        self.last_error = None

    def _auth_failed(self, outcome: Outcome) -> None:
        if not self.auth_fault:
            if outcome.status is None:
                log.error("no usable upstream token (%s); pausing %.0f s and reading it again;"
                          " nothing is dropped", outcome.detail, self.config.auth_pause_s)
            else:
                log.error("upstream %s refused the token (HTTP %s); pausing %.0f s and reading"
                          " the token again; nothing is dropped", self.shown_url,
                          outcome.status, self.config.auth_pause_s)
        self.auth_fault = True
        self.last_error = (f"HTTP {outcome.status}: token refused" if outcome.status is not None
                           else outcome.detail[:300])
        self._pause(self.config.auth_pause_s)
        self.token = self.tokens.read()

    def stats(self) -> dict:
        return {"url": self.shown_url, "format": self.config.format,
                "last_upload": self.last_upload, "last_error": self.last_error,
                "auth_fault": self.auth_fault, "refusing": self.refusing,
                "delivered": self.delivered, "dead_lettered": self.dead_lettered,
                "insecure": self.insecure}
