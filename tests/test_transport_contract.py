"""The delivery policy does not depend on the transport.

The uploader's behaviour tests run against the HTTP transports and real servers
(tests/test_uplink.py, tests/test_influx.py). Here a transport that is not HTTP at all, an
in-memory "broker" that answers with outcomes from a script (as an MQTT client would map PUBACK,
a lost connection or a refused payload), gets the same guarantees from the same Uploader:
everything arrives once and in order through retries, a refused record alone goes to the dead
letters, refused credentials pause and re-read the token, and `stop()` cuts a send in flight.
"""

from __future__ import annotations

import threading

import pytest

from agent.config import UplinkConfig
from agent.outbox import READING, Outbox, Record
from agent.transports import Outcome, transport_formats, transports
from agent.uplink import Uploader
from tests.conftest import wait_for


class ScriptedBroker:
    """A transport: keeps what it accepted; `script` outcomes come first, then "ok"."""

    shown_url = "memory://broker"
    insecure: list[str] = []

    def __init__(self, refuse_seq: int | None = None):
        self.script: list[Outcome] = []
        self.refuse_seq = refuse_seq  # a payload the broker refuses whenever it is in a batch
        self.accepted: list[int] = []
        self.tokens: list[str | None] = []
        self.cuts = 0
        self.hold = threading.Event()  # set: a send hangs until cut
        self.sending = threading.Event()

    def send(self, batch: list[Record], epoch: str, token: str | None) -> Outcome:
        self.tokens.append(token)
        if self.hold.is_set():
            self.sending.set()
            while self.hold.is_set():
                self.hold.wait(0.01)
            return Outcome("stopped")
        if self.script:
            return self.script.pop(0)
        if self.refuse_seq in [record.seq for record in batch]:
            return Outcome("split", 422, detail="payload refused")
        self.accepted.extend(record.seq for record in batch)
        return Outcome("ok", 0)

    def cut(self) -> None:
        self.cuts += 1
        self.hold.clear()


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def readings(box: Outbox, count: int) -> list[int]:
    for i in range(count):
        box.submit(READING, 1.795e9 + 10 * i, {"level_m": 7.0 + i / 1000, "ok": True})
    assert box.flush()
    return [record.seq for record in box.next_batch(count)]


def uploader_with(box: Outbox, broker: ScriptedBroker, tmp_path, **overrides) -> Uploader:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    settings = dict(
        url="http://127.0.0.1:9/unused",
        token_file=str(token),
        batch_max=4,
        backoff_max_s=0.05,
        auth_pause_s=0.05,
        batch_s=0.0,
    )
    settings.update(overrides)
    uploader = Uploader(box, UplinkConfig(**settings), "benanga-01")
    uploader.transport = broker  # the one seam a new transport plugs into
    return uploader


def drain(uploader: Uploader, box: Outbox) -> None:
    uploader.start()
    try:
        wait_for(lambda: box.stats()["depth"] == 0, 10, "the outbox to drain")
    finally:
        uploader.stop()


def test_the_registry_finds_both_http_formats():
    assert {"influx", "native"} <= set(transport_formats())
    for module in transports().values():
        assert callable(module.open_transport) and module.SCHEMES


def test_retries_deliver_everything_once_and_in_order(outbox, tmp_path):
    seqs = readings(outbox, 10)
    broker = ScriptedBroker()
    broker.script = [Outcome("retry", detail="connection lost"), Outcome("retry", 503)]
    uploader = uploader_with(outbox, broker, tmp_path)
    drain(uploader, outbox)
    assert broker.accepted == seqs
    assert uploader.delivered == 10 and uploader.dead_lettered == 0


def test_a_refused_record_alone_goes_to_the_dead_letters(outbox, tmp_path):
    seqs = readings(outbox, 8)
    broker = ScriptedBroker(refuse_seq=seqs[5])
    uploader = uploader_with(outbox, broker, tmp_path)
    drain(uploader, outbox)
    assert broker.accepted == [seq for seq in seqs if seq != seqs[5]]
    assert outbox.stats()["dead_lettered"] == 1 and uploader.dead_lettered == 1


def test_refused_credentials_pause_reread_the_token_and_lose_nothing(outbox, tmp_path):
    seqs = readings(outbox, 3)
    broker = ScriptedBroker()
    broker.script = [Outcome("auth", 403, detail="not authorised")]
    uploader = uploader_with(outbox, broker, tmp_path)
    (tmp_path / "token").write_text("second-token\n")  # the technician installs a new one
    drain(uploader, outbox)
    assert broker.accepted == seqs
    assert broker.tokens[0] == "first-token" and broker.tokens[-1] == "second-token"


def test_stop_cuts_a_send_in_flight(outbox, tmp_path):
    readings(outbox, 2)
    broker = ScriptedBroker()
    broker.hold.set()
    uploader = uploader_with(outbox, broker, tmp_path)
    uploader.start()
    wait_for(broker.sending.is_set, 10, "a send to hang")
    uploader.stop(timeout=5)
    assert not uploader.is_alive() and broker.cuts >= 1
    assert outbox.stats()["depth"] == 2  # nothing acknowledged that did not arrive
