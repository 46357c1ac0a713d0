"""`uplink.format = "influx"` against a real InfluxDB 1.x (Debian's influxdb) on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import requests

from agent.config import UplinkConfig
from agent.outbox import EVENT, HEARTBEAT, READING, Outbox
from agent.units import format_utc
from agent.uplink import Uploader
from agent.wire import influx_line

pytestmark = pytest.mark.skipif(
    shutil.which("influxd") is None,
    reason="influxd is not installed (.ci/run installs Debian's influxdb)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def influx(tmp_path_factory):
    root = tmp_path_factory.mktemp("influx")
    http_port, rpc_port = free_port(), free_port()
    config = root / "influxdb.conf"
    config.write_text(f"""
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
[monitor]
  store-enabled = false
""")
    process = subprocess.Popen(
        ["influxd", "-config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/ping", timeout=1).status_code == 204:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("influxd did not start")
        time.sleep(0.2)
    requests.post(f"{url}/query", params={"q": "CREATE DATABASE gauge"}, timeout=5)
    yield url
    process.terminate()
    process.wait(timeout=10)


def query(url: str, q: str) -> list:
    answer = requests.get(f"{url}/query", params={"db": "gauge", "q": q}, timeout=5).json()
    series = answer["results"][0].get("series", [])
    return series[0]["values"] if series else []


def test_readings_events_and_heartbeats_are_written_and_a_resent_batch_does_not_duplicate(
    influx, tmp_path
):
    outbox = Outbox(tmp_path / "outbox.sqlite")
    start = 1_795_000_000.0
    for i in range(30):
        outbox.submit(
            READING,
            start + 10 * i,
            {"level_m": 7.0 + i / 100, "ok": True, "reason": None, "state": "normal"},
        )
    outbox.submit(
        EVENT,
        start + 95,
        {"kind": "level", "state": "waspada", "previous": "normal", "level_m": 7.5},
    )
    outbox.submit(
        HEARTBEAT,
        start + 100,
        {"uptime_s": 100.0, "queue_depth": 31, "clock_synchronised": None, "version": "0.1.0"},
    )
    assert outbox.flush()
    batch = outbox.next_batch(100)
    config = UplinkConfig(
        url=influx, format="influx", influx_db="gauge", batch_max=100, batch_s=0.0
    )
    uploader = Uploader(outbox, config, "benanga-01")
    try:
        assert uploader._post(batch).action == "ok"
        assert uploader._post(batch).action == "ok"  # sent again, as after a lost ack
    finally:
        outbox.close()
    assert query(influx, "SELECT count(level_m) FROM gauge_reading") == [
        ["1970-01-01T00:00:00Z", 30]
    ]
    assert query(influx, "SELECT state, previous FROM gauge_event WHERE kind = 'level'") == [
        [format_utc(start + 95), "waspada", "normal"]
    ]
    assert query(influx, "SELECT last(queue_depth) FROM gauge_heartbeat")[0][1] == 31


def test_a_point_influx_refuses_is_a_400_so_the_batch_is_split(influx, tmp_path):
    outbox = Outbox(tmp_path / "outbox.sqlite")
    try:
        outbox.submit(READING, 1_795_000_000.0, {"level_m": 7.0, "ok": True})
        outbox.submit(READING, 1_795_000_010.0, {"level_m": "high", "ok": True})  # type clash
        assert outbox.flush()
        good, bad = outbox.next_batch(2)
        uploader = Uploader(
            outbox, UplinkConfig(url=influx, format="influx", batch_s=0.0), "benanga-01"
        )
        assert uploader._post([good]).action == "ok"
        outcome = uploader._post([bad])
    finally:
        outbox.close()
    assert (outcome.action, outcome.status) == ("split", 400)
    assert "conflict" in outcome.detail


def test_line_protocol_escapes_and_types():
    from agent.outbox import Record

    line = influx_line(
        "benanga 01",
        Record(
            7,
            "event",
            1.5,
            {
                "kind": "fault",
                "fault": "stale",
                "active": True,
                "note": 'say "hi"',
                "n": 3,
                "missing": None,
            },
        ),
    )
    assert line == (
        "gauge_event,fault=stale,kind=fault,station=benanga\\ 01 active=true,n=3i,"
        'note="say \\"hi\\"",seq=7i 1500000000'
    )
