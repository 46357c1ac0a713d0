"""The uploader against the real reference receiver on loopback, with scripted faults."""

from __future__ import annotations

import email.utils
import logging
import os
import shutil
import sqlite3
import subprocess
import time

import pytest

from agent.config import UplinkConfig
from agent.outbox import EVENT, READING, Outbox
from agent.receiver import ReferenceReceiver
from agent.transports.http import parse_retry_after, redact_url
from agent.uplink import Uploader
from tests.conftest import free_port, wait_for
from tests.hostile_upstream import HostileUpstream, answer, garbage, huge_body, trickle

TOKEN = "tok-3f9a7c1e-never-in-logs"
TOKENS = {"benanga-01": TOKEN}


@pytest.fixture
def receiver(tmp_path):
    server = ReferenceReceiver(tmp_path / "receiver.sqlite", TOKENS).start()
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
    """Short timeouts; readings sent at once (batch_s = 0) unless a test is about batching."""
    settings = dict(
        url=url,
        token_file=str(token_file),
        batch_max=50,
        connect_timeout_s=1.0,
        read_timeout_s=0.5,
        backoff_max_s=0.2,
        retry_after_max_s=5.0,
        auth_pause_s=0.3,
        batch_s=0.0,
    )
    settings.update(overrides)
    return UplinkConfig(**settings)


def readings(box: Outbox, count: int, start: float = 1.795e9) -> None:
    for i in range(count):
        box.submit(
            READING,
            start + 10 * i,
            {
                "level_m": 7.0 + i / 1000,
                "reading_m": 7.0,
                "raw": 3.4,
                "raw_unit": "m",
                "ok": True,
                "reason": None,
                "state": "normal",
            },
        )
    assert box.flush()


def run_uploader(box, config) -> Uploader:
    uploader = Uploader(box, config, "benanga-01")
    uploader.start()
    return uploader


def stored_seqs(receiver) -> list[int]:
    return [seq for _, _, seq, _, _ in receiver.stored()]


@pytest.mark.slow
def test_everything_arrives_once_in_batches_with_idempotency_keys(receiver, outbox, token_file):
    readings(outbox, 120)
    outbox.submit(
        EVENT,
        1.795e9 + 5,
        {"kind": "level", "state": "siaga", "previous": "waspada", "level_m": 7.91},
    )
    assert outbox.flush()
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_for(lambda: outbox.stats()["depth"] == 0 and len(receiver.stored()) == 121)
    finally:
        uploader.stop()
    stored = receiver.stored()
    assert [seq for _, _, seq, _, _ in stored] == list(range(1, 122))
    assert stored[120][3] == "event" and stored[120][4]["state"] == "siaga"
    assert {epoch for _, epoch, *_ in stored} == {outbox.epoch}
    assert receiver.requests == 3 and receiver.duplicates == 0
    # The event went first, in the first batch; keys name station, epoch and the seq range.
    assert receiver.idempotency_keys[0] == f"benanga-01:{outbox.epoch}:121-49:50"


@pytest.mark.slow
def test_a_receiver_that_is_down_then_back_gets_everything(tmp_path, outbox, token_file):
    first = ReferenceReceiver(tmp_path / "r.sqlite", TOKENS).start()
    port = first.port
    first.close()  # down: connection refused
    readings(outbox, 10)
    uploader = run_uploader(outbox, uplink_config(f"http://127.0.0.1:{port}/ingest", token_file))
    try:
        wait_for(lambda: uploader.last_error is not None)
        assert outbox.stats()["depth"] == 10  # kept while the server is down
        back = ReferenceReceiver(tmp_path / "r.sqlite", TOKENS, port=port).start()
        try:
            wait_for(lambda: outbox.stats()["depth"] == 0)
            assert stored_seqs(back) == list(range(1, 11))
        finally:
            back.close()
    finally:
        uploader.stop()
    assert uploader.last_error is None


@pytest.mark.slow
def test_server_errors_and_throttling_are_retried(receiver, outbox, token_file):
    receiver.script.extend(
        [("status", 500), ("status", 503), ("status", 408), ("status", 429, {"Retry-After": "1"})]
    )
    readings(outbox, 5)
    started = time.monotonic()
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_for(lambda: outbox.stats()["depth"] == 0)
    finally:
        uploader.stop()
    assert receiver.requests == 5 and stored_seqs(receiver) == [1, 2, 3, 4, 5]
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured


@pytest.mark.slow
def test_a_hang_past_the_read_timeout_and_a_connection_reset_are_retried(
    receiver, outbox, token_file
):
    receiver.script.extend([("hang", 1.5), ("reset",)])
    readings(outbox, 3)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file, read_timeout_s=0.5))
    try:
        wait_for(lambda: outbox.stats()["depth"] == 0)
    finally:
        uploader.stop()
    assert stored_seqs(receiver) == [1, 2, 3] and receiver.requests == 3


@pytest.mark.slow
def test_a_poison_record_is_isolated_and_dead_lettered_the_rest_delivered(
    receiver, outbox, token_file
):
    readings(outbox, 20)
    outbox.submit(READING, 1.795e9 + 500, {"level_m": "7,5", "ok": True})  # not a number
    readings(outbox, 20, start=1.795e9 + 1000)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_for(lambda: outbox.stats()["depth"] == 0)
    finally:
        uploader.stop()
    assert stored_seqs(receiver) == [seq for seq in range(1, 42) if seq != 21]
    assert outbox.stats()["dead_lettered"] == 1 and uploader.dead_lettered == 1


@pytest.mark.slow
@pytest.mark.parametrize("bad_token, status", [("wrong-token", 403), ("", 401)])
def test_a_refused_token_raises_auth_pauses_rereads_and_drops_nothing(
    receiver, outbox, tmp_path, caplog, bad_token, status
):
    token_file = tmp_path / "token"
    token_file.write_text(bad_token)
    readings(outbox, 4)
    caplog.set_level(logging.DEBUG)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_for(lambda: uploader.auth_fault)
        assert outbox.stats()["depth"] == 4 and f"HTTP {status}" in uploader.last_error
        token_file.write_text(TOKEN)  # the technician fixes the token
        wait_for(lambda: outbox.stats()["depth"] == 0)
        assert not uploader.auth_fault
    finally:
        uploader.stop()
    assert stored_seqs(receiver) == [1, 2, 3, 4]
    assert TOKEN not in caplog.text
    assert f"refused the token (HTTP {status})" in caplog.text


@pytest.mark.slow
def test_the_token_is_never_logged_or_shown(receiver, outbox, token_file, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.script.extend([("status", 500), ("status", 401), ("status", 422)])
    readings(outbox, 1)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_for(lambda: outbox.stats()["depth"] == 0)
        shown = repr(uploader.stats())
    finally:
        uploader.stop()
    assert TOKEN not in caplog.text and TOKEN not in shown
    assert caplog.text  # the failures were logged, just not the token


def test_retry_after_as_whole_seconds_or_http_date_is_floored_and_capped():
    now = 1_800_000_000.0
    assert parse_retry_after("120", now, 3600) == 120
    assert parse_retry_after("99999", now, 3600) == 3600
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after(date, now, 3600) == pytest.approx(90, abs=1)
    # What made the old uploader post 21 times a second: floored at 1 s, or ignored (backoff).
    assert parse_retry_after("0", now, 3600) == 1.0
    assert parse_retry_after(email.utils.formatdate(now - 600, usegmt=True), now, 3600) == 1.0
    for odd in ("-5", "NaN", "nan", "1.5", "inf", "1e9", "soon", "", "Fri, 99 Xyz 2026", "\u0661"):
        assert parse_retry_after(odd, now, 3600) is None, odd
    assert parse_retry_after(None, now, 1) is None


def test_urls_with_credentials_are_redacted_in_what_we_show():
    assert (
        redact_url("https://user:secret@api.example.org:8443/v1/ingest?key=abc")
        == "https://api.example.org:8443/v1/ingest"
    )


@pytest.fixture
def certificate(tmp_path):
    """A throwaway self-signed certificate for 127.0.0.1 (as a private CA would issue)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_certificates_are_verified_by_default_and_a_private_ca_can_be_trusted(
    tmp_path, outbox, token_file, certificate
):
    cert, key = certificate
    server = ReferenceReceiver(tmp_path / "tls.sqlite", TOKENS, tls_cert=cert, tls_key=key).start()
    try:
        assert server.url.startswith("https://")
        readings(outbox, 2)
        batch = outbox.next_batch(2)
        untrusted = Uploader(outbox, uplink_config(server.url, token_file), "benanga-01")
        outcome = untrusted._post(batch)
        assert outcome.action == "retry" and "SSLError" in outcome.detail
        trusted = Uploader(
            outbox, uplink_config(server.url, token_file, ca_bundle=str(cert)), "benanga-01"
        )
        assert trusted._post(batch).action == "ok"
        assert [seq for _, _, seq, _, _ in server.stored()] == [1, 2]
    finally:
        server.close()


# -- hostile upstreams and bad luck (issue #9) -----------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_nothing_counts_as_delivered(
    receiver, outbox, token_file, status, caplog
):
    """requests turns a 301/302 POST into a GET, and a 307 re-posts the body to another host:
    either 2xx deleted the batch while the upstream stored nothing."""
    hostile = HostileUpstream(answer(f"{status} Moved", {"Location": receiver.url + "?token=x"}))
    readings(outbox, 3)
    uploader = run_uploader(
        outbox, uplink_config(hostile.url, token_file, allow_insecure_http=True)
    )
    try:
        wait_for(lambda: hostile.requests >= 2)
    finally:
        uploader.stop()
        hostile.close()
    assert receiver.requests == 0 and stored_seqs(receiver) == []
    assert outbox.stats()["depth"] == 3
    assert f"redirected to {receiver.url}; not followed" in uploader.last_error
    assert "token=x" not in caplog.text


@pytest.mark.slow
def test_a_huge_error_answer_is_not_read_into_memory(outbox, token_file):
    """A 400 MiB error page took the daemon to 1.6 GB RSS: only 4 KiB of an answer is read."""
    hostile = HostileUpstream(huge_body())
    readings(outbox, 1)
    before = rss_mb()
    uploader = run_uploader(outbox, uplink_config(hostile.url, token_file))
    try:
        wait_for(lambda: hostile.requests >= 3)
        grown = rss_mb() - before
    finally:
        uploader.stop()
        hostile.close()
    assert grown < 40, f"RSS grew {grown:.0f} MB"
    assert uploader.last_error == "HTTP 500" and outbox.stats()["depth"] == 1


@pytest.mark.slow
def test_a_trickling_server_is_cut_at_the_request_deadline_and_a_stop_never_waits(
    outbox, token_file
):
    hostile = HostileUpstream(trickle(every_s=0.2))
    readings(outbox, 1)
    uploader = run_uploader(outbox, uplink_config(hostile.url, token_file, request_deadline_s=1.5))
    try:
        wait_for(lambda: uploader.last_error is not None, timeout=10)
        assert uploader.last_error == "no complete answer within 1.5 s"
        wait_for(lambda: hostile.requests >= 2, timeout=10)  # in the middle of another
        started = time.monotonic()
        uploader.stop(timeout=5)
        assert time.monotonic() - started < 1.0 and not uploader.is_alive()
    finally:
        uploader.stop()
        hostile.close()
    assert outbox.stats()["depth"] == 1


QUOTA_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Kuota habis</title></head>"
    b"<body>Paket data Anda telah habis.</body></html>"
)


def first_answer_from(hostile: HostileUpstream, outbox, token_file) -> Uploader:
    """Two readings sent to `hostile` until its first answer is taken one way or the other;
    returns the (stopped) uploader."""
    readings(outbox, 2)
    uploader = run_uploader(outbox, uplink_config(hostile.url, token_file))
    try:
        wait_for(
            lambda: (
                hostile.requests >= 1
                and (uploader.last_error is not None or outbox.stats()["depth"] == 0)
            )
        )
    finally:
        uploader.stop()
        hostile.close()
    return uploader


@pytest.mark.parametrize(
    "behaviour",
    [garbage, answer("200 OK", {"Content-Type": "text/html"}, QUOTA_PAGE)],
    ids=["garbage", "html-200"],
)
def test_garbage_and_a_web_page_with_200_are_retried_never_taken_as_delivery(
    outbox, token_file, behaviour
):
    uploader = first_answer_from(HostileUpstream(behaviour), outbox, token_file)
    assert outbox.stats()["depth"] == 2
    if behaviour is garbage:
        assert "connection failed" in uploader.last_error
    else:
        assert "web page, not an acknowledgement" in uploader.last_error


def test_a_200_without_an_acknowledgement_is_delivery_by_contract_but_warned(
    outbox, token_file, caplog
):
    first_answer_from(
        HostileUpstream(answer("200 OK", {"Content-Type": "text/plain"}, b"OK")), outbox, token_file
    )
    # The contract: any 2xx accepts the batch; but a technician must hear about it.
    assert outbox.stats()["depth"] == 0
    assert "without the acknowledgement" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("retry_after", ["0", "-5", "NaN", "Thu, 01 Jan 1970 00:00:00 GMT"])
def test_odd_retry_after_values_never_make_a_hot_loop(
    receiver, outbox, token_file, caplog, retry_after
):
    """The old uploader posted 21 times a second (and logged each) on these."""
    receiver.script.extend([("status", 503, {"Retry-After": retry_after})] * 100)
    readings(outbox, 1)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file, backoff_max_s=5.0))
    try:
        time.sleep(3.0)
    finally:
        uploader.stop()
    assert 1 <= receiver.requests <= 4
    assert caplog.text.count("upload to") <= 2  # one line per change of what goes wrong


@pytest.mark.slow
def test_a_new_alarm_event_cuts_the_backoff_short_and_goes_first(tmp_path, outbox, token_file):
    port = free_port()
    readings(outbox, 5)
    uploader = run_uploader(
        outbox, uplink_config(f"http://127.0.0.1:{port}/ingest", token_file, backoff_max_s=120.0)
    )
    receiver = None
    try:
        wait_for(lambda: uploader.last_error is not None)  # down: backing off (up to 120 s)
        time.sleep(1.5)
        receiver = ReferenceReceiver(tmp_path / "late.sqlite", TOKENS, port=port).start()
        outbox.submit(
            EVENT,
            1.795e9 + 99,
            {"kind": "level", "state": "awas", "previous": "siaga", "level_m": 8.6},
        )
        assert outbox.flush()
        uploader.urgent.set()
        started = time.monotonic()
        wait_for(lambda: outbox.stats()["depth"] == 0, timeout=10)
        assert time.monotonic() - started < 5
        first = receiver.stored()
    finally:
        uploader.stop()
        if receiver is not None:
            receiver.close()
    assert sorted(seq for _, _, seq, _, _ in first) == [1, 2, 3, 4, 5, 6]
    # One request: the event first (seq 6), then the readings that waited (key first-last:n).
    assert list(receiver.idempotency_keys) == [f"benanga-01:{outbox.epoch}:6-5:6"]


@pytest.mark.slow
def test_not_a_number_never_reaches_upstream_as_a_number_and_a_damaged_row_is_set_aside(
    receiver, outbox, token_file, caplog
):
    """A Modbus transmitter answering NaN killed the old uploader for good: its strict encoder
    raised on the stored NaN, and the same record was first in line after every restart."""
    outbox.submit(
        READING,
        1.795e9,
        {"raw": float("nan"), "level_m": None, "ok": False, "reason": "not_a_number"},
    )
    readings(outbox, 3, start=1.795e9 + 10)
    connection = sqlite3.connect(outbox.path)
    connection.execute("UPDATE readings SET body = '{not json' WHERE seq = 3")
    connection.commit()
    connection.close()
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_for(lambda: outbox.stats()["depth"] == 0)
    finally:
        uploader.stop()
    stored = {seq: body for _, _, seq, _, body in receiver.stored()}
    assert sorted(stored) == [1, 2, 4] and stored[1]["raw"] is None
    assert outbox.stats()["dead_lettered"] == 1 and "seq 3 cannot be read" in caplog.text


@pytest.mark.slow
def test_an_upstream_that_refuses_everything_is_a_fault_and_the_rest_stays_queued(
    receiver, outbox, token_file
):
    """An API gateway on a wrong path answers 400 to everything: the old uploader
    dead-lettered every record and then deleted them beyond dead_letter_max."""
    receiver.script.extend([("status", 400)] * 200)
    readings(outbox, 40)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file, batch_max=8))
    try:
        wait_for(lambda: uploader.refusing)
        time.sleep(1.0)
        assert outbox.stats()["dead_lettered"] == 5 and outbox.stats()["depth"] == 35
        receiver.script.clear()  # the gateway is fixed
        wait_for(lambda: outbox.stats()["depth"] == 0)
        assert not uploader.refusing
    finally:
        uploader.stop()
    assert len(stored_seqs(receiver)) == 35


@pytest.mark.parametrize(
    "content, problem",
    [
        ("\ufeff" + TOKEN + "\r\n", None),  # Notepad: BOM and CRLF
        (TOKEN + "\nsecond line\n", "has 2 lines"),
        (TOKEN[:5] + "\x00" + TOKEN[5:], "printable"),
        (TOKEN[:5] + "é" + TOKEN[5:], "printable"),
    ],
)
@pytest.mark.slow
def test_the_token_file_is_read_as_text_and_a_bad_one_is_an_auth_fault(
    receiver, outbox, tmp_path, content, problem, caplog
):
    token_file = tmp_path / "token"
    token_file.write_text(content, encoding="utf-8")
    token_file.chmod(0o600)
    readings(outbox, 2)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        if problem is None:
            wait_for(lambda: outbox.stats()["depth"] == 0)
        else:
            wait_for(lambda: uploader.auth_fault)
            assert problem in uploader.last_error and receiver.requests == 0
    finally:
        uploader.stop()
    assert TOKEN not in caplog.text


@pytest.mark.slow
def test_a_token_path_that_is_a_fifo_is_an_auth_fault_not_a_hung_uploader(
    receiver, outbox, tmp_path
):
    token_file = tmp_path / "token"
    os.mkfifo(token_file)  # nobody writes: reading it would block the uploader for ever
    readings(outbox, 1)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_for(lambda: uploader.auth_fault)
        assert "is not a regular file" in uploader.last_error and receiver.requests == 0
    finally:
        uploader.stop()


@pytest.mark.slow
def test_a_token_file_others_can_read_is_warned_and_an_echoed_token_is_masked(
    receiver, outbox, token_file, caplog
):
    token_file.chmod(0o644)
    receiver.script.append(("status", 422, {}, {"error": f"bad token Bearer {TOKEN}"}))
    readings(outbox, 1)
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file))
    try:
        wait_for(lambda: outbox.stats()["dead_lettered"] == 1)
    finally:
        uploader.stop()
    assert "can be read by others (mode 0644)" in caplog.text
    dead = sqlite3.connect(outbox.path).execute("SELECT reason FROM dead_letters").fetchall()
    assert "***" in dead[0][0] and TOKEN not in dead[0][0] and TOKEN not in caplog.text


# The thread dying of an exception nothing catches is the scenario; pytest notices it too.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_uploader_whose_thread_fails_carries_on_and_one_that_dies_is_restarted(
    receiver, outbox, token_file, monkeypatch
):
    from agent.supervision import ThreadHealth

    health = ThreadHealth()
    real_next_batch = outbox.next_batch
    failures = iter([OSError("disk I/O error")] * 2 + [SystemExit("killed")])

    def flaky_next_batch(limit):
        problem = next(failures, None)
        if problem is not None:
            raise problem
        return real_next_batch(limit)

    monkeypatch.setattr(outbox, "next_batch", flaky_next_batch)
    readings(outbox, 3)
    uploader = Uploader(
        outbox, uplink_config(receiver.url, token_file), "benanga-01", health=health
    )
    uploader.start()
    try:
        wait_for(lambda: "uplink" in health.failing())
        assert health.failing()["uplink"] == "OSError: disk I/O error"
        wait_for(lambda: not uploader.is_alive(), timeout=10)  # SystemExit ends it
        assert uploader.ensure_running() and uploader.loop.restarts == 1
        wait_for(lambda: outbox.stats()["depth"] == 0)
        assert health.failing() == {}
    finally:
        uploader.stop()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_verify_tls_off_is_warned_once_at_start_and_shown_not_warned_per_request(
    tmp_path, outbox, token_file, certificate, caplog
):
    """urllib3 warned on every request (and this suite turns warnings into errors): now one
    line at start, and the status says it."""
    cert, key = certificate
    server = ReferenceReceiver(tmp_path / "tls.sqlite", TOKENS, tls_cert=cert, tls_key=key).start()
    readings(outbox, 3)
    uploader = run_uploader(
        outbox, uplink_config(server.url, token_file, verify_tls=False, batch_max=1)
    )
    try:
        wait_for(lambda: outbox.stats()["depth"] == 0)
    finally:
        uploader.stop()
        server.close()
    assert caplog.text.count("verify_tls = false: any server can pose as the upstream") == 1
    assert uploader.stats()["insecure"] == [
        "verify_tls = false: any server can pose as the upstream"
    ]


# -- issue #13: calm readings go in batches, alarms at once ----------------------------------


@pytest.mark.slow
def test_calm_readings_wait_to_go_as_one_batch(receiver, outbox, token_file):
    uploader = run_uploader(outbox, uplink_config(receiver.url, token_file, batch_s=0.6))
    try:
        for _ in range(5):
            readings(outbox, 1)
            uploader.new_reading(live=False)
        wait_for(lambda: outbox.stats()["depth"] == 0)
    finally:
        uploader.stop()
    assert receiver.requests == 1 and len(stored_seqs(receiver)) == 5


@pytest.mark.slow
@pytest.mark.parametrize("why", ["a warning is up", "an alarm event", "a full batch"])
def test_readings_go_at_once_while_a_warning_is_up_events_always_and_full_batches(
    receiver, outbox, token_file, why
):
    # batch_s of an hour: only the rule under test can make these go within the test's wait.
    config = uplink_config(receiver.url, token_file, batch_s=3600.0, batch_max=5)
    uploader = run_uploader(outbox, config)
    try:
        if why == "an alarm event":
            outbox.submit(
                EVENT,
                1.795e9,
                {"kind": "level", "state": "waspada", "previous": "normal", "level_m": 7.51},
            )
            assert outbox.flush()
            uploader.urgent.set()  # what the daemon does with a new event
        else:
            readings(outbox, 5 if why == "a full batch" else 1)
            uploader.new_reading(live=why == "a warning is up")
        wait_for(lambda: outbox.stats()["depth"] == 0)
    finally:
        uploader.stop()
    assert receiver.requests == 1
