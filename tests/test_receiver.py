"""The reference receiver as an example worth copying: every rule of docs/upstream.md, against
raw HTTP from a socket (what a broken or hostile client really sends)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time

import pytest

from agent.receiver import MAX_BODY_BYTES, WORKERS, ReferenceReceiver, read_token_file
from tests.conftest import ROOT

TOKENS = {"benanga-01": "token-benanga", "benanga-02": "token-second"}
EPOCH = "6b82c59282a241819bd8763cd73a4aac"


@pytest.fixture
def receiver(tmp_path):
    server = ReferenceReceiver(tmp_path / "receiver.sqlite", TOKENS).start()
    yield server
    server.close()


def batch(station: str = "benanga-01", seq: int = 1) -> bytes:
    return json.dumps(
        {
            "station": station,
            "epoch": EPOCH,
            "records": [
                {
                    "seq": seq,
                    "type": "reading",
                    "time": "2026-11-27T06:41:20.496Z",
                    "level_m": 7.9,
                    "ok": True,
                }
            ],
        }
    ).encode()


def post(receiver, body: bytes | None, headers: dict) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=10)
    connection.putrequest("POST", "/ingest", skip_accept_encoding=True)
    for key, value in headers.items():
        connection.putheader(key, value)
    connection.endheaders()
    if body:
        connection.send(body)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    return response.status, answer


def bearer(token: str = "token-benanga") -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.slow
def test_a_good_batch_is_stored_once(receiver):
    body = batch()
    headers = {**bearer(), "Content-Length": str(len(body))}
    assert post(receiver, body, headers) == (200, {"accepted": 1, "duplicates": 0})
    assert post(receiver, body, headers) == (200, {"accepted": 0, "duplicates": 1})


@pytest.mark.slow
def test_authentication_comes_before_the_body(receiver):
    """A stranger announcing 8 MiB is answered at once, with nothing read."""
    started = time.monotonic()
    status, answer = post(receiver, None, {"Content-Length": str(MAX_BODY_BYTES)})
    assert (status, answer["error"]) == (401, "a Bearer token is required")
    status, _ = post(receiver, None, {**bearer("guess"), "Content-Length": str(MAX_BODY_BYTES)})
    assert status == 403 and time.monotonic() - started < 2


@pytest.mark.parametrize(
    "headers, status",
    [
        ({}, 411),  # no Content-Length
        ({"Transfer-Encoding": "chunked"}, 411),
        ({"Content-Length": "-1"}, 400),  # read until EOF: +200 MiB before
        ({"Content-Length": "abc"}, 400),
        ({"Content-Length": str(MAX_BODY_BYTES + 1)}, 413),
    ],
)
@pytest.mark.slow
def test_the_length_is_required_and_bounded(receiver, headers, status):
    assert post(receiver, None, {**bearer(), **headers})[0] == status


@pytest.mark.parametrize(
    "body, status, reason",
    [
        (b"{not json", 400, "not JSON"),
        (b"[" * 100000 + b"]" * 100000, 400, "not JSON"),  # RecursionError in json
        (b"[" * 30 + b"]" * 30, 400, "nests deeper"),
        (b"\xff\xfe", 400, "not JSON"),
        (batch(station="bad station"), 422, "station must be"),
        (json.dumps({"station": "benanga-01", "epoch": "x", "records": []}).encode(), 422, "epoch"),
        (batch(seq=2**63), 422, "records[0].seq"),
    ],
)
@pytest.mark.slow
def test_every_bad_input_is_a_4xx_with_a_json_reason(receiver, body, status, reason):
    answer_status, answer = post(receiver, body, {**bearer(), "Content-Length": str(len(body))})
    assert answer_status == status and reason in answer["error"]


@pytest.mark.slow
def test_a_seq_sqlite_cannot_hold_leaves_no_transaction_open(receiver):
    """One authenticated batch with seq >= 2**63 left the old receiver's connection inside an
    open transaction: every POST after it got no answer while /health said OK."""
    for body in (batch(seq=2**63), batch(seq=2**64)):
        assert post(receiver, body, {**bearer(), "Content-Length": str(len(body))})[0] == 422
    good = batch(seq=5)
    assert post(receiver, good, {**bearer(), "Content-Length": str(len(good))})[0] == 200


@pytest.mark.slow
def test_a_gauge_can_post_only_as_its_own_station(receiver):
    body = batch(station="benanga-02")
    status, answer = post(
        receiver, body, {**bearer("token-benanga"), "Content-Length": str(len(body))}
    )
    assert status == 403 and "for station 'benanga-01'" in answer["error"]
    assert (
        post(receiver, body, {**bearer("token-second"), "Content-Length": str(len(body))})[0] == 200
    )


@pytest.mark.slow
def test_past_the_worker_pool_new_connections_get_503_at_once(receiver):
    idle = [socket.create_connection(("127.0.0.1", receiver.port)) for _ in range(WORKERS)]
    try:
        time.sleep(0.3)
        started = time.monotonic()
        status, answer = post(receiver, None, bearer())
        assert (status, answer) == (503, {"error": "receiver busy"})
        assert time.monotonic() - started < 2
    finally:
        for connection in idle:
            connection.close()


@pytest.mark.slow
@pytest.mark.skipif(
    subprocess.run(["which", "openssl"], capture_output=True).returncode,
    reason="openssl is not installed",
)
def test_with_tls_an_idle_client_does_not_block_the_others(tmp_path):
    """The old receiver did the TLS handshake in its accept loop: one connection that never
    spoke blocked every client."""
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
    server = ReferenceReceiver(tmp_path / "r.sqlite", TOKENS, tls_cert=cert, tls_key=key).start()
    silent = socket.create_connection(("127.0.0.1", server.port))  # never says a word
    try:
        context = ssl.create_default_context(cafile=str(cert))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", server.port, context=context, timeout=5
        )
        connection.request("GET", "/health")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        silent.close()
        server.close()


@pytest.mark.parametrize(
    "content, problem",
    [
        ("", "no `station-id token` line"),
        ("# only a comment\n", "no `station-id token` line"),
        ("just-a-token\n", "must be `station-id token`"),
        ("bad/station token\n", "is not a station id"),
        ("a t1\nb t1\n", "already another station's"),
    ],
)
def test_a_token_file_that_would_accept_anyone_or_is_ambiguous_is_refused(
    tmp_path, content, problem
):
    path = tmp_path / "tokens"
    path.write_text(content)
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        read_token_file(path)
    result = start_receiver_cli(path)
    assert result.returncode == 1 and problem in result.stderr


def start_receiver_cli(token_file) -> subprocess.CompletedProcess:
    """The receiver as the city's server starts it, expected to refuse its token file."""
    return subprocess.run(
        [sys.executable, "-m", "agent.receiver", "--token-file", str(token_file), "--port", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )


@pytest.mark.parametrize("kind", ["fifo", "directory", "missing"])
def test_a_token_file_that_is_not_a_file_is_an_error_at_once_not_a_hang(tmp_path, kind):
    path = tmp_path / "tokens"
    if kind == "fifo":
        os.mkfifo(path)  # no writer: reading it would wait for ever
    elif kind == "directory":
        path.mkdir()
    result = start_receiver_cli(path)
    expected = {
        "fifo": "is not a regular file",
        "directory": "is a directory",
        "missing": "no such file",
    }[kind]
    assert result.returncode == 1 and result.stderr.startswith(f"receiver: {path}: {expected}")


def test_a_token_file_with_a_bom_and_comments_maps_stations(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("\ufeff# gauges\nbenanga-01 abc  # the dam\nbenanga-02 def\n", encoding="utf-8")
    assert read_token_file(path) == {"benanga-01": "abc", "benanga-02": "def"}
