"""What every HTTP transport shares: one POST per batch with a hard deadline, and the mapping
of HTTP answers onto delivery outcomes (agent.transports.Outcome). The formats (native JSON,
InfluxDB line protocol) subclass HttpTransport and change only what differs: the URL, the body,
the credentials and what a success answer must look like.

| answer                                  | outcome |
| --------------------------------------- | ------- |
| 2xx                                     | ok (unless the format's `refuse_success` says the answer is not the upstream's: retry) |
| network error, timeout, no complete answer within `request_deadline_s`, 408, 429, 5xx | retry; `Retry-After` (whole seconds or an HTTP date) kept within [1 s, `retry_after_max_s`] |
| 3xx                                     | retry: not followed (a redirected POST may arrive as a GET, or at another host, and its 2xx would delete data that was never stored) |
| 400, 413, 422                           | split |
| 401, 403                                | auth |
| anything else                           | retry, logged as unexpected |
"""

from __future__ import annotations

import email.utils
import math
import socket
import threading
import weakref
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from agent.config import UplinkConfig, is_loopback_host
from agent.outbox import Record
from agent.transports import Outcome

SPLIT_STATUSES = {400, 413, 422}
AUTH_STATUSES = {401, 403}
ANSWER_BYTES = 4096  # of an answer's body; the rest is discarded unread
RETRY_AFTER_FLOOR_S = 1.0  # a Retry-After of 0, in the past or negative waits this long


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


def parse_retry_after(
    value: str | None, now: float, limit: float, floor: float = RETRY_AFTER_FLOOR_S
) -> float | None:
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

    def __init__(self, *args, **kwargs) -> None:
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

        http_pool = type(
            "Pool", (HTTPConnectionPool,), {"ConnectionCls": remembering(HTTPConnection)}
        )
        https_pool = type(
            "TLSPool", (HTTPSConnectionPool,), {"ConnectionCls": remembering(HTTPSConnection)}
        )
        self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}

    def cut(self) -> None:
        for sock in list(self._sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class HttpTransport:
    """One POST per batch. Subclasses set `content_type` and implement `encode`; they may
    change `post_url`/`params`, `credentials` and `refuse_success`."""

    content_type = "application/octet-stream"

    def __init__(
        self,
        config: UplinkConfig,
        station: str,
        stopping: threading.Event,
        wall: Callable[[], float],
    ):
        self.config = config
        self.station = station
        self.stopping = stopping
        self.wall = wall
        self.adapter = CuttableAdapter()
        self.session = requests.Session()
        self.session.mount("http://", self.adapter)
        self.session.mount("https://", self.adapter)
        self.post_url = config.url
        self.params: dict[str, str] = {}
        self.shown_url = redact_url(config.url)
        self.insecure = self._insecure_settings()
        self._deadline_hit = False

    # -- what a format changes ---------------------------------------------------------------
    def encode(self, batch: list[Record], epoch: str) -> bytes:
        raise NotImplementedError

    def credentials(self, token: str, headers: dict[str, str]) -> tuple[str, str] | None:
        """Put the token where the upstream wants it: a Bearer header here; or return a
        (user, password) pair for HTTP basic authentication."""
        headers["Authorization"] = f"Bearer {token}"
        return None

    def refuse_success(self, status: int, answer: str) -> str | None:
        """Why a 2xx answer is not the upstream's acknowledgement (then: retried), or None."""
        return None

    # -- the POST ----------------------------------------------------------------------------
    def _insecure_settings(self) -> list[str]:
        insecure = []
        parts = urlsplit(self.config.url)
        if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
            insecure.append("plain http: the token and the readings cross the network unencrypted")
        if not self.config.verify_tls:
            insecure.append("verify_tls = false: any server can pose as the upstream")
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return insecure

    def cut(self) -> None:
        self.adapter.cut()

    def send(self, batch: list[Record], epoch: str, token: str | None) -> Outcome:
        try:
            body = self.encode(batch, epoch)
        except (ValueError, TypeError) as error:
            return Outcome("split", None, detail=f"cannot be encoded: {error}"[:300])
        first, last = batch[0].seq, batch[-1].seq
        headers = {
            "Content-Type": self.content_type,
            "Idempotency-Key": f"{self.station}:{epoch}:{first}-{last}:{len(batch)}",
        }
        auth = self.credentials(token, headers) if token else None
        verify: bool | str = self.config.verify_tls
        if verify and self.config.ca_bundle:
            verify = self.config.ca_bundle
        self._deadline_hit = False
        timer = threading.Timer(self.config.request_deadline_s, self._deadline)
        timer.daemon = True
        timer.start()
        try:
            response = self.session.post(
                self.post_url,
                params=self.params,
                data=body,
                headers=headers,
                auth=auth,
                timeout=(self.config.connect_timeout_s, self.config.read_timeout_s),
                verify=verify,
                allow_redirects=False,
                stream=True,
            )
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
                return Outcome(
                    "retry",
                    detail=f"no complete answer within {self.config.request_deadline_s:g} s",
                )
            if self.stopping.is_set():
                return Outcome("stopped")
            return Outcome("retry", detail=f"connection failed ({type(error).__name__})")
        finally:
            timer.cancel()
        return self._judge(status, answer, location, retry_after_header, token)

    def _judge(
        self,
        status: int,
        answer: str,
        location: str,
        retry_after_header: str | None,
        token: str | None,
    ) -> Outcome:
        detail = mask(answer, token)[:300] if status >= 300 else ""
        if 200 <= status < 300:
            refused = self.refuse_success(status, answer)
            if refused is not None:
                return Outcome("retry", status, detail=refused)
            return Outcome("ok", status)
        if 300 <= status < 400:
            target = redact_url(location) if location else "nowhere"
            return Outcome(
                "retry",
                status,
                detail=f"redirected to {target}; not followed (a"
                " POST must reach the upstream itself: set"
                " uplink.url to the final address)",
            )
        if status in AUTH_STATUSES:
            return Outcome("auth", status, detail=detail)
        if status in SPLIT_STATUSES:
            return Outcome("split", status, detail=detail)
        retry_after = parse_retry_after(
            retry_after_header, self.wall(), self.config.retry_after_max_s
        )
        if not (status in (408, 429) or status >= 500):
            detail = f"unexpected answer; retrying. {detail}"
        return Outcome("retry", status, retry_after, detail)

    def _deadline(self) -> None:
        self._deadline_hit = True
        self.adapter.cut()

    @staticmethod
    def _read_answer(response: requests.Response) -> str:
        """At most ANSWER_BYTES of the body: a huge error page must not fill the memory of the
        process that drives the siren."""
        data = response.raw.read(ANSWER_BYTES, decode_content=True) or b""
        return data.decode("utf-8", errors="replace")
