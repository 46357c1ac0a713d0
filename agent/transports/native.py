"""The native upstream: the JSON batch of docs/upstream.md, POSTed with a Bearer token."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from agent.config import UplinkConfig
from agent.outbox import Record
from agent.transports.http import HttpTransport
from agent.wire import NATIVE_CONTENT_TYPE, encode_native

FORMAT = "native"
SCHEMES = ("https", "http")

log = logging.getLogger("gauge-agent")


def looks_like_html(answer: str) -> bool:
    head = answer.lstrip()[:64].lower()
    return head.startswith(("<!doctype html", "<html", "<head", "<body"))


class NativeTransport(HttpTransport):
    content_type = NATIVE_CONTENT_TYPE

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._warned_unacknowledged = False

    def encode(self, batch: list[Record], epoch: str) -> bytes:
        return encode_native(self.station, epoch, batch)

    def refuse_success(self, status: int, answer: str) -> str | None:
        if looks_like_html(answer):
            # A web page is never the upstream's acknowledgement: a SIM whose data quota ran
            # out, a captive portal or a proxy answers for it, and the batch would be lost.
            return (
                f"answered HTTP {status} with a web page, not an acknowledgement (a captive"
                " portal, a quota page or a proxy?); kept, retried"
            )
        self._check_acknowledgement(status, answer)
        return None

    def _check_acknowledgement(self, status: int, answer: str) -> None:
        """The contract: any 2xx accepts the batch. A native upstream also says what it took;
        a 2xx without that is worth one warning (a portal or a proxy may answer for it)."""
        if self._warned_unacknowledged:
            return
        try:
            acknowledged = isinstance(json.loads(answer).get("accepted"), int)
        except (ValueError, AttributeError):
            acknowledged = False
        if not acknowledged:
            self._warned_unacknowledged = True
            log.warning(
                "upstream %s answered HTTP %d without the acknowledgement"
                ' docs/upstream.md describes ({"accepted": N}): if a proxy or a'
                " captive portal answers in its place, readings are lost; check"
                " uplink.url",
                self.shown_url,
                status,
            )


def open_transport(
    config: UplinkConfig, station: str, stopping: threading.Event, wall: Callable[[], float]
) -> NativeTransport:
    return NativeTransport(config, station, stopping, wall)
