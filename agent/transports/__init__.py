"""Upstream transports: how a batch of outbox records reaches the upstream, one module each.

The delivery policy (batching, retries with back-off, splitting around refused records, dead
letters, ordering, the auth and refusing faults) lives in agent.uplink.Uploader and is the same
for every transport. A transport only sends one batch and says what its answer means, as one
`Outcome`:
- "ok": the upstream has the whole batch (it is acknowledged and deleted),
- "retry": not delivered, try the same batch again (after `retry_after_s` if the upstream said),
- "split": the upstream refuses something in the batch (split it to find the record),
- "auth": the credentials were refused (the uploader pauses and reads the token again),
- "stopped": the uploader is stopping; nothing was decided.

A transport module declares `FORMAT` (the `uplink.format` that selects it), `SCHEMES` (the URL
schemes `uplink.url` may have for it, e.g. ("https", "http") or ("mqtts",)) and
`open_transport(config, station, stopping, wall) -> Transport`. Adding one (an MQTT client, say)
is one module here plus its tests: the uploader's behaviour tests then hold for it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Protocol

from agent.config import UplinkConfig
from agent.outbox import Record
from agent.registry import discover


@dataclass
class Outcome:
    action: str  # "ok" | "retry" | "split" | "auth" | "stopped"
    status: int | None = None  # the upstream's answer code (HTTP status), None if none came
    retry_after_s: float | None = None
    detail: str = ""  # for the log and the status; never carries the token


class Transport(Protocol):
    shown_url: str  # where it sends, without credentials: for logs and the status
    insecure: list[str]  # why this connection is not private, if it is not (logged, in status)

    def send(self, batch: list[Record], epoch: str, token: str | None) -> Outcome: ...

    def cut(self) -> None:
        """End a send in flight from another thread (a stop): never waits on the network."""


@cache
def transports() -> dict[str, ModuleType]:
    """Every transport module in this package by its FORMAT (modules without one are shared
    helpers, such as http)."""
    return discover(__name__, __path__, "FORMAT")


def transport_formats() -> tuple[str, ...]:
    return tuple(transports())


def open_transport(
    config: UplinkConfig, station: str, stopping: threading.Event, wall: Callable[[], float]
) -> Transport:
    return transports()[config.format].open_transport(config, station, stopping, wall)
