"""The uploader against the real reference receiver on loopback, with scripted faults."""

from __future__ import annotations

import email.utils
import logging
import shutil
import subprocess
import time

import pytest

from agent.config import UplinkConfig
from agent.outbox import EVENT, READING, Outbox
from agent.receiver import ReferenceReceiver
from agent.uplink import Uploader, parse_retry_after, redact_url

TOKEN = "tok-3f9a7c1e-never-in-logs"


@pytest.fixture
def receiver(tmp_path):
    server = ReferenceReceiver(tmp_path / "receiver.sqlite", TOKEN).start()
    yield server
    server.close()


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def uplink_config(url: str, token_file, **overrides) -> UplinkConfig:
    settings = dict(url=url, token_file=str(token_file), batch_max=50, connect_timeout_s=1.0,
                    read_timeout_s=0.5, backoff_max_s=0.2, retry_after_max_s=5.0,
                    auth_pause_s=0.3)
    settings.update(overrides)
    return UplinkConfig(**settings)


def readings(box: Outbox, count: int, start: float = 1.795e9) -> None:
    for i in range(count):
        box.submit(READING, start + 10 * i, {"level_m": 7.0 + i / 1000, "reading_m": 7.0,
                                             "raw": 3.4, "raw_unit": "m", "ok": True,
                                             "reason": None, "state": "normal"})
    assert box.flush()


def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def run_uploader(box, config) -> Uploader:
    uploader = Uploader(box, config, "benanga-01")
    uploader.start()
    return uploader


def stored_seqs(receiver) -> list[int]:
    return [seq for _, _, seq, _, _ in receiver.stored()]


def test_everything_arrives_once_in_batches_with_idempotency_keys(receiver, outbox, token_file):
    readings(outbox, 120)
    outbox.submit(EVENT, 1.795e9 + 5, {"kind": "level", "state": "siaga",
                                       "previous": "waspada", "level_m": 7.91})
    assert outbox.flush()
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_until(lambda: outbox.stats()["depth"] == 0 and len(receiver.stored()) == 121)
    finally:
        uploader.stop()
    stored = receiver.stored()
    assert [seq for _, _, seq, _, _ in stored] == list(range(1, 122))
    assert stored[120][3] == "event" and stored[120][4]["state"] == "siaga"
    assert {epoch for _, epoch, *_ in stored} == {outbox.epoch}
    assert receiver.requests == 3 and receiver.duplicates == 0
    # The event went first, in the first batch; keys name station, epoch and the seq range.
    assert receiver.idempotency_keys[0] == f"benanga-01:{outbox.epoch}:121-49:50"


def test_a_receiver_that_is_down_then_back_gets_everything(tmp_path, outbox, token_file):
    first = ReferenceReceiver(tmp_path / "r.sqlite", TOKEN).start()
    port = first.port
    first.close()                                       # down: connection refused
    readings(outbox, 10)
    uploader = run_uploader(outbox, uplink_config(f"http://127.0.0.1:{port}/ingest", token_file))
    try:
        wait_until(lambda: uploader.last_error is not None)
        assert outbox.stats()["depth"] == 10            # kept while the server is down
        back = ReferenceReceiver(tmp_path / "r.sqlite", TOKEN, port=port).start()
        try:
            wait_until(lambda: outbox.stats()["depth"] == 0)
            assert stored_seqs(back) == list(range(1, 11))
        finally:
            back.close()
    finally:
        uploader.stop()
    assert uploader.last_error is None


def test_server_errors_and_throttling_are_retried(receiver, outbox, token_file):
    receiver.script.extend([("status", 500), ("status", 503), ("status", 408),
                            ("status", 429, {"Retry-After": "1"})])
    readings(outbox, 5)
    started = time.monotonic()
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_until(lambda: outbox.stats()["depth"] == 0)
    finally:
        uploader.stop()
    assert receiver.requests == 5 and stored_seqs(receiver) == [1, 2, 3, 4, 5]
    assert time.monotonic() - started >= 1.0           # Retry-After: 1 was honoured


def test_a_hang_past_the_read_timeout_and_a_connection_reset_are_retried(receiver, outbox,
                                                                         token_file):
    receiver.script.extend([("hang", 1.5), ("reset",)])
    readings(outbox, 3)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file, read_timeout_s=0.5))
    try:
        wait_until(lambda: outbox.stats()["depth"] == 0)
    finally:
        uploader.stop()
    assert stored_seqs(receiver) == [1, 2, 3] and receiver.requests == 3


def test_a_poison_record_is_isolated_and_dead_lettered_the_rest_delivered(receiver, outbox,
                                                                          token_file):
    readings(outbox, 20)
    outbox.submit(READING, 1.795e9 + 500, {"level_m": "7,5", "ok": True})   # not a number
    readings(outbox, 20, start=1.795e9 + 1000)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_until(lambda: outbox.stats()["depth"] == 0)
    finally:
        uploader.stop()
    assert stored_seqs(receiver) == [seq for seq in range(1, 42) if seq != 21]
    assert outbox.stats()["dead_lettered"] == 1 and uploader.dead_lettered == 1


@pytest.mark.parametrize("bad_token, status", [("wrong-token", 403), ("", 401)])
def test_a_refused_token_raises_auth_pauses_rereads_and_drops_nothing(
        receiver, outbox, tmp_path, caplog, bad_token, status):
    token_file = tmp_path / "token"
    token_file.write_text(bad_token)
    readings(outbox, 4)
    caplog.set_level(logging.DEBUG)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_until(lambda: uploader.auth_fault)
        assert outbox.stats()["depth"] == 4 and f"HTTP {status}" in uploader.last_error
        token_file.write_text(TOKEN)                  # the technician fixes the token
        wait_until(lambda: outbox.stats()["depth"] == 0)
        assert not uploader.auth_fault
    finally:
        uploader.stop()
    assert stored_seqs(receiver) == [1, 2, 3, 4]
    assert TOKEN not in caplog.text
    assert f"refused the token (HTTP {status})" in caplog.text


def test_the_token_is_never_logged_or_shown(receiver, outbox, token_file, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.script.extend([("status", 500), ("status", 401), ("status", 422)])
    readings(outbox, 1)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_until(lambda: outbox.stats()["depth"] == 0)
        shown = repr(uploader.stats())
    finally:
        uploader.stop()
    assert TOKEN not in caplog.text and TOKEN not in shown
    assert caplog.text  # the failures were logged, just not the token


def test_retry_after_as_seconds_or_http_date_is_clamped():
    now = 1_800_000_000.0
    assert parse_retry_after("120", now, 3600) == 120
    assert parse_retry_after("99999", now, 3600) == 3600
    assert parse_retry_after("-5", now, 3600) == 0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after(date, now, 3600) == pytest.approx(90, abs=1)
    assert parse_retry_after("soon", now, 3600) is None and parse_retry_after(None, now, 1) is None


def test_urls_with_credentials_are_redacted_in_what_we_show():
    assert redact_url("https://user:secret@api.example.org:8443/v1/ingest?key=abc") == \
        "https://api.example.org:8443/v1/ingest"


@pytest.fixture
def certificate(tmp_path):
    """A throwaway self-signed certificate for 127.0.0.1 (as a private CA would issue)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_certificates_are_verified_by_default_and_a_private_ca_can_be_trusted(
        tmp_path, outbox, token_file, certificate):
    cert, key = certificate
    server = ReferenceReceiver(tmp_path / "tls.sqlite", TOKEN, tls_cert=cert,
                               tls_key=key).start()
    try:
        assert server.url.startswith("https://")
        readings(outbox, 2)
        batch = outbox.next_batch(2)
        untrusted = Uploader(outbox, uplink_config(server.url, token_file), "benanga-01")
        outcome = untrusted._post(batch)
        assert outcome.action == "retry" and "SSLError" in outcome.detail
        trusted = Uploader(outbox, uplink_config(server.url, token_file, ca_bundle=str(cert)),
                           "benanga-01")
        assert trusted._post(batch).action == "ok"
        assert [seq for _, _, seq, _, _ in server.stored()] == [1, 2]
    finally:
        server.close()
