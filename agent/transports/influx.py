"""InfluxDB 1.x `/write` (line protocol), for a city that already runs InfluxDB and Grafana.
The token is `user:password` (basic authentication) or a bare token (Bearer)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from agent.config import UplinkConfig
from agent.outbox import Record
from agent.transports.http import HttpTransport
from agent.wire import INFLUX_CONTENT_TYPE, encode_influx

FORMAT = "influx"
SCHEMES = ("https", "http")


class InfluxTransport(HttpTransport):
    content_type = INFLUX_CONTENT_TYPE

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.post_url = f"{self.config.url.rstrip('/')}/write"
        self.params = {"db": self.config.influx_db, "precision": "ns"}

    def encode(self, batch: list[Record], epoch: str) -> bytes:
        return encode_influx(self.station, batch)

    def credentials(self, token: str, headers: dict[str, str]) -> tuple[str, str] | None:
        if ":" in token:
            user, _, password = token.partition(":")  # InfluxDB 1.x user:password
            return (user, password)
        return super().credentials(token, headers)


def open_transport(
    config: UplinkConfig, station: str, stopping: threading.Event, wall: Callable[[], float]
) -> InfluxTransport:
    return InfluxTransport(config, station, stopping, wall)
