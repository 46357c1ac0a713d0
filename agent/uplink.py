"""The uploader thread: outbox -> upstream, with store-and-forward retry.

It runs on its own supervised thread and talks to the outbox through its own database
connection, so a hanging or hostile server can never delay a sample, the alarm engine or the
siren. A batch counts as delivered only on the upstream's own success answer to the POST it was
sent with. The transport (agent.transports: native JSON, InfluxDB) turns each answer into an
outcome, and this thread acts on it the same way for every transport (as weewx's uploaders do).
For the HTTP transports:

| answer                                  | action |
| --------------------------------------- | ------ |
| 2xx to the POST itself                  | the whole batch is acknowledged and deleted (native format: unless the answer is a web page, which a portal sends, not the upstream: retried) |
| network error, timeout, no complete answer within `request_deadline_s`, 408, 429, 5xx | retry the same batch: full-jitter exponential backoff up to `backoff_max_s`, or the server's `Retry-After` (whole seconds or an HTTP date; at least 1 s, at most `retry_after_max_s`) |
| 3xx                                     | not followed (a redirected POST may arrive as a GET, or at another host, and its 2xx would delete data that was never stored): an error naming the target, retried |
| 400, 413, 422                           | split the batch in halves until the refused records are alone; each of those goes to the dead letters, the rest is delivered. After `REFUSING_AFTER` records refused in a row with nothing accepted, fault `upstream_refusing`: the upstream refuses everything (a gateway on a wrong path), so records stay queued and are retried until it accepts one |
| 401, 403                                | fault `auth`; pause `auth_pause_s`, read the token again, retry; nothing is dropped |
| anything else                           | logged as unexpected and retried like a 5xx |

A record that cannot be encoded goes to the dead letters with the reason; it never blocks the
queue. At most `ANSWER_BYTES` of an answer are read (agent.transports.http). A new alarm event cuts a back-off short, and
goes first. `stop()` cuts the connection: SIGTERM never waits on the network.

The token comes from `uplink.token_file` or `$CREDENTIALS_DIRECTORY/token`, is read as UTF-8 (a
Windows BOM is dropped), must be one line of printable characters, and never appears in a log
line, a status or a dead letter.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tenacity import (
    Retrying,
    retry_if_result,
    stop_any,
    stop_when_event_set,
    wait_random_exponential,
)

from agent.config import UplinkConfig
from agent.errors import UnreadableFile
from agent.files import read_small_file
from agent.outbox import EVENT, Outbox, Record
from agent.supervision import LoopThread, ThreadHealth
from agent.transports import Outcome, open_transport
from agent.transports.http import RETRY_AFTER_FLOOR_S

log = logging.getLogger("gauge-agent")

REFUSING_AFTER = 5  # records refused in a row, none accepted: the upstream refuses all
# What the unit's SetCredential= hands over when /etc/gauge-agent/token does not exist (systemd
# 252 refuses an empty value): no token, so the gauge stores its readings until one is installed.
NO_TOKEN_PLACEHOLDER = "no-token-installed"
TOKEN_FILE_LIMIT = 64 * 1024  # a token is a line; a bigger file is the wrong file


class TokenSource:
    def __init__(self, token_file: str):
        self.token_file = token_file
        self.problem: str | None = None  # why the file's token cannot be used
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
            self._refuse(f"the token file {error}")
            return None
        try:
            text = raw.decode("utf-8-sig")  # -sig: a BOM from Windows Notepad
        except UnicodeDecodeError:
            self._refuse(f"the token file {path} is not UTF-8 text")
            return None
        self._check_mode(path)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            return None
        if len(lines) > 1:
            self._refuse(
                f"the token file {path} has {len(lines)} lines; it must hold"
                " the token alone, on one line"
            )
            return None
        token = lines[0]
        if not token.isprintable() or not token.isascii():
            self._refuse(
                f"the token file {path} holds characters that cannot go in an"
                " HTTP header (not printable ASCII)"
            )
            return None
        if token == NO_TOKEN_PLACEHOLDER:
            log.warning(
                "no upstream token is installed (/etc/gauge-agent/token): readings are"
                " kept on the card and sent once it is"
            )
            return None
        return token

    def _refuse(self, problem: str) -> None:
        self.problem = problem
        log.error("%s: fault auth until it is fixed", problem)

    def _check_mode(self, path: Path) -> None:
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if self._warned_mode or (credentials and str(path).startswith(credentials)):
            return  # systemd's own copy: read-only, this user only
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            return
        if mode & 0o077:
            self._warned_mode = True
            log.warning(
                "the token file %s can be read by others (mode %04o): chmod 600 it", path, mode
            )


class Uploader:
    def __init__(
        self,
        outbox: Outbox,
        config: UplinkConfig,
        station: str,
        wall: Callable[[], float] = time.time,
        health: ThreadHealth | None = None,
    ):
        self.outbox = outbox
        self.config = config
        self.station = station
        self.wall = wall
        self.tokens = TokenSource(config.token_file)
        self.token = self.tokens.read()
        self.stopping = threading.Event()
        self.wake = threading.Event()  # new records worth looking at now
        self.urgent = threading.Event()  # a new alarm event: cut any back-off short
        # A warning or the rate alarm is up: every reading goes at once. In calm times they
        # wait for a full batch or `batch_s` (one request and one acknowledgement a minute
        # instead of one per reading: half the card writes and CPU of uploading).
        self.live = threading.Event()
        self._batch_due: float | None = None  # when the waiting calm batch goes anyway
        self.loop = LoopThread("uplink", self._step, health or ThreadHealth(), self.stopping)
        self.auth_fault = False
        self.refusing = False  # fault upstream_refusing
        self.refused_in_a_row = 0
        self.last_upload: float | None = None
        self.last_error: str | None = None
        self.delivered = 0
        self.dead_lettered = 0
        self._failing = False
        self.transport = open_transport(config, station, self.stopping, wall)
        self.shown_url = self.transport.shown_url
        self.insecure = self.transport.insecure
        for reason in self.insecure:
            log.warning("uplink to %s: %s", self.shown_url, reason)

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
        self.transport.cut()
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
            self.wake.set()  # a full batch goes without waiting for batch_s

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
        if (
            batch_s <= 0
            or self.live.is_set()
            or len(batch) >= self.config.batch_max
            or batch[0].type == EVENT
        ):
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
                    return False  # an alarm event goes first; then this batch again
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
        log.error(
            "upstream refused record seq %d (%s %s): moved to dead letters",
            record.seq,
            outcome.status,
            outcome.detail[:200],
        )
        if outcome.status is None:
            return  # our own encoding, not the upstream
        self.refused_in_a_row += 1
        if self.refused_in_a_row >= REFUSING_AFTER and not self.refusing:
            self.refusing = True
            log.error(
                "upstream %s refused the last %d records and accepted none: fault"
                " upstream_refusing; the rest stays queued until it accepts one",
                self.shown_url,
                self.refused_in_a_row,
            )

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

        retrying = Retrying(
            retry=retry_if_result(lambda outcome: outcome.action == "retry"),
            wait=wait,
            stop=stop_any(stop_when_event_set(self.stopping), stop_when_event_set(self.urgent)),
            sleep=self._pause,
            before_sleep=before_sleep,
            retry_error_callback=lambda state: Outcome("stopped"),
        )
        return retrying(self._post, batch)

    def _pause(self, seconds: float) -> None:
        """Wait, but wake for a stop or a new alarm event."""
        deadline = time.monotonic() + seconds
        while not (self.stopping.is_set() or self.urgent.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.urgent.wait(min(remaining, 1.0))

    def _epoch_of(self, batch: list[Record]) -> str:
        """The epoch of the file the batch was read from (the outbox may have replaced a
        damaged file since): a record always goes, and is acknowledged, as what it is."""
        epoch = batch[0].epoch or self.outbox.epoch
        assert epoch is not None, "records are read from an open outbox, which has an epoch"
        return epoch

    def _post(self, batch: list[Record]) -> Outcome:
        """One attempt: the transport sends the batch and says what the answer means."""
        if self.urgent.is_set() or self.stopping.is_set():
            return Outcome("stopped")  # an alarm event came during the back-off: it goes first
        if self.tokens.problem is not None:
            return Outcome("auth", None, detail=self.tokens.problem)
        return self.transport.send(batch, self._epoch_of(batch), self.token)

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
        log.log(
            logging.WARNING if changed or not self._failing else logging.DEBUG,
            "upload to %s failed (%s); retrying in %.0f s",
            self.shown_url,
            what,
            sleep_s,
        )
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
                log.error(
                    "no usable upstream token (%s); pausing %.0f s and reading it again;"
                    " nothing is dropped",
                    outcome.detail,
                    self.config.auth_pause_s,
                )
            else:
                log.error(
                    "upstream %s refused the token (HTTP %s); pausing %.0f s and reading"
                    " the token again; nothing is dropped",
                    self.shown_url,
                    outcome.status,
                    self.config.auth_pause_s,
                )
        self.auth_fault = True
        self.last_error = (
            f"HTTP {outcome.status}: token refused"
            if outcome.status is not None
            else outcome.detail[:300]
        )
        self._pause(self.config.auth_pause_s)
        self.token = self.tokens.read()

    def stats(self) -> dict:
        return {
            "url": self.shown_url,
            "format": self.config.format,
            "last_upload": self.last_upload,
            "last_error": self.last_error,
            "auth_fault": self.auth_fault,
            "refusing": self.refusing,
            "delivered": self.delivered,
            "dead_lettered": self.dead_lettered,
            "insecure": self.insecure,
        }
