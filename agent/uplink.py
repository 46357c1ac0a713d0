"""The uploader thread: outbox -> upstream, with store-and-forward retry.

It runs on its own thread and talks to the outbox through its own database connection, so a
hanging server can never delay a sample, the alarm engine or the siren. Each answer maps to one
action (as weewx's uploaders do):

| answer                                  | action |
| --------------------------------------- | ------ |
| 2xx                                     | the whole batch is acknowledged and deleted |
| network error, timeout, 408, 429, 5xx   | retry the same batch for ever: full-jitter exponential backoff up to `backoff_max_s`, or the server's `Retry-After` (seconds or HTTP date, clamped) |
| 400, 413, 422                           | split the batch in halves until the refused records are alone; each of those goes to the dead-letter table, the rest is delivered |
| 401, 403                                | fault `auth`; pause `auth_pause_s`, read the token again, retry; nothing is dropped |
| anything else                           | logged as unexpected and retried like a 5xx |

The token comes from `uplink.token_file` or `$CREDENTIALS_DIRECTORY/token` and is never logged.
"""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import requests
from tenacity import Retrying, retry_if_result, stop_when_event_set, wait_random_exponential

from agent.config import UplinkConfig
from agent.outbox import Outbox, Record
from agent.wire import INFLUX_CONTENT_TYPE, NATIVE_CONTENT_TYPE, encode_influx, encode_native

log = logging.getLogger("gauge-agent")

SPLIT_STATUSES = {400, 413, 422}
AUTH_STATUSES = {401, 403}


def redact_url(url: str) -> str:
    """The URL without user:password@ and without a query (it may carry credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# What the unit's SetCredential= hands over when /etc/gauge-agent/token does not exist (systemd
# 252 refuses an empty value): no token, so the gauge stores its readings until one is installed.
NO_TOKEN_PLACEHOLDER = "no-token-installed"


class TokenSource:
    def __init__(self, token_file: str):
        self.token_file = token_file

    def path(self) -> Path | None:
        if self.token_file:
            return Path(self.token_file)
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        return Path(credentials) / "token" if credentials else None

    def read(self) -> str | None:
        path = self.path()
        if path is None:
            return None
        try:
            token = path.read_text(encoding="utf-8").strip() or None
        except OSError as error:
            log.error("cannot read the upstream token from %s: %s", path, error.strerror)
            return None
        if token == NO_TOKEN_PLACEHOLDER:
            log.warning("no upstream token is installed (/etc/gauge-agent/token): readings are"
                        " kept on the card and sent once it is")
            return None
        return token


@dataclass
class Outcome:
    action: str                    # "ok" | "retry" | "split" | "auth" | "stopped"
    status: int | None = None
    retry_after_s: float | None = None
    detail: str = ""


def parse_retry_after(value: str | None, now: float, limit: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - now
    return min(max(seconds, 0.0), limit)


class Uploader(threading.Thread):
    def __init__(self, outbox: Outbox, config: UplinkConfig, station: str,
                 session: requests.Session | None = None,
                 wall: Callable[[], float] = time.time):
        super().__init__(name="uplink", daemon=True)
        self.outbox = outbox
        self.config = config
        self.station = station
        self.session = session or requests.Session()
        self.wall = wall
        self.tokens = TokenSource(config.token_file)
        self.token = self.tokens.read()
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.auth_fault = False
        self.last_upload: float | None = None
        self.last_error: str | None = None
        self.delivered = 0
        self.dead_lettered = 0
        self._failing = False
        if config.format == "influx":
            base = config.url.rstrip("/")
            self.post_url = f"{base}/write"
            self.params = {"db": config.influx_db, "precision": "ns"}
        else:
            self.post_url = config.url
            self.params = {}
        self.shown_url = redact_url(config.url)

    # -- thread ------------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                batch = self.outbox.next_batch(self.config.batch_max)
            except Exception as error:  # noqa: BLE001 - a locked or broken db: try again
                log.warning("uplink cannot read the outbox: %s", error)
                batch = []
            if not batch:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            self.deliver(batch)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(timeout)

    # -- delivery ----------------------------------------------------------------------------
    def deliver(self, batch: list[Record]) -> None:
        """Deliver `batch`, splitting around refused records. Returns when done or stopping."""
        while not self.stopping.is_set():
            outcome = self._send_until_answered(batch)
            if outcome.action == "ok":
                self.outbox.ack([record.seq for record in batch])
                self.delivered += len(batch)
                self.last_upload = self.wall()
                self._recovered()
                return
            if outcome.action == "auth":
                self._auth_failed(outcome)
                continue
            if outcome.action == "split":
                if len(batch) == 1:
                    self.outbox.dead_letter(batch[0], outcome.status, outcome.detail)
                    self.dead_lettered += 1
                    log.error("upstream refused record seq %d (%s %s): moved to dead letters",
                              batch[0].seq, outcome.status, outcome.detail[:200])
                    return
                middle = len(batch) // 2
                self.deliver(batch[:middle])
                self.deliver(batch[middle:])
                return
            return  # stopped

    def _send_until_answered(self, batch: list[Record]) -> Outcome:
        """POST until the answer is not "retry": tenacity, full jitter, Retry-After honoured."""
        backoff = wait_random_exponential(multiplier=1.0, max=self.config.backoff_max_s)

        def wait(retry_state) -> float:
            outcome: Outcome = retry_state.outcome.result()
            if outcome.retry_after_s is not None:
                return outcome.retry_after_s
            return backoff(retry_state)

        def before_sleep(retry_state) -> None:
            outcome: Outcome = retry_state.outcome.result()
            self._failed(outcome, retry_state.next_action.sleep)

        retrying = Retrying(retry=retry_if_result(lambda outcome: outcome.action == "retry"),
                            wait=wait, stop=stop_when_event_set(self.stopping),
                            sleep=self.stopping.wait, before_sleep=before_sleep,
                            retry_error_callback=lambda state: Outcome("stopped"))
        return retrying(self._post, batch)

    def _post(self, batch: list[Record]) -> Outcome:
        if self.config.format == "influx":
            body, content_type = encode_influx(self.station, batch), INFLUX_CONTENT_TYPE
        else:
            body = encode_native(self.station, self.outbox.epoch, batch)
            content_type = NATIVE_CONTENT_TYPE
        headers = {"Content-Type": content_type,
                   "Idempotency-Key": f"{self.station}:{self.outbox.epoch}:"
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
        try:
            response = self.session.post(
                self.post_url, params=self.params, data=body, headers=headers, auth=auth,
                timeout=(self.config.connect_timeout_s, self.config.read_timeout_s),
                verify=verify)
        except requests.Timeout:
            return Outcome("retry", detail="no answer within the timeout")
        except requests.ConnectionError as error:
            return Outcome("retry", detail=f"connection failed ({type(error).__name__})")
        except requests.RequestException as error:
            return Outcome("retry", detail=f"request failed ({type(error).__name__})")
        status = response.status_code
        detail = response.text[:300] if status >= 400 else ""
        response.close()
        if 200 <= status < 300:
            return Outcome("ok", status)
        if status in AUTH_STATUSES:
            return Outcome("auth", status, detail=detail)
        if status in SPLIT_STATUSES:
            return Outcome("split", status, detail=detail)
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self.wall(),
                                        self.config.retry_after_max_s)
        if not (status in (408, 429) or status >= 500):
            detail = f"unexpected answer; retrying. {detail}"
        return Outcome("retry", status, retry_after, detail)

    # -- state and logging -------------------------------------------------------------------
    def _failed(self, outcome: Outcome, sleep_s: float) -> None:
        what = f"HTTP {outcome.status}" if outcome.status else outcome.detail
        self.last_error = f"{what}"[:300]
        log.warning("upload to %s failed (%s); retrying in %.0f s", self.shown_url, what,
                    sleep_s)
        self._failing = True

    def _recovered(self) -> None:
        if self._failing or self.auth_fault:
            log.info("upload to %s works again", self.shown_url)
        self._failing = False
        self.auth_fault = False
        self.last_error = None

    def _auth_failed(self, outcome: Outcome) -> None:
        if not self.auth_fault:
            log.error("upstream %s refused the token (HTTP %s); pausing %.0f s and reading the"
                      " token again; nothing is dropped", self.shown_url, outcome.status,
                      self.config.auth_pause_s)
        self.auth_fault = True
        self.last_error = f"HTTP {outcome.status}: token refused"
        self.stopping.wait(self.config.auth_pause_s)
        self.token = self.tokens.read()

    def stats(self) -> dict:
        return {"url": self.shown_url, "format": self.config.format,
                "last_upload": self.last_upload, "last_error": self.last_error,
                "auth_fault": self.auth_fault, "delivered": self.delivered,
                "dead_lettered": self.dead_lettered}
