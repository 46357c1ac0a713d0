"""The one-line status a technician reads."""

from __future__ import annotations

from agent.status import one_line

BASE = {"updated": "2026-11-27T06:41:20Z", "updated_epoch": 1000.0, "station": "benanga-01",
        "running": True, "interval_s": 2.0, "level_m": 7.912, "rate_m_per_h": 0.064,
        "state": "siaga", "warning": "siaga", "faults": ["auth"],
        "siren": {"pattern": "intermittent", "silenced": True}}


def test_shows_level_states_faults_queue_and_last_upload():
    status = {**BASE, "outbox": {"depth": 40, "pending": 2},
              "uplink": {"last_upload": 970.0, "last_error": "HTTP 401: token refused"}}
    assert one_line(status, 1001.0) == (
        "2026-11-27T06:41:20Z  benanga-01  level  7.912 m  rate +0.064 m/h  state SIAGA"
        "  warning SIAGA  siren intermittent (silenced)  faults auth  queue 42"
        "  last upload 31 s ago (HTTP 401: token refused)")


def test_store_only_and_stale_status_say_so():
    status = {**BASE, "outbox": {"depth": 3, "pending": 0}, "uplink": None}
    line = one_line(status, 1100.0)
    assert "queue 3 (store only)" in line and line.endswith("[STALE 100 s]")
    assert one_line({**BASE, "running": False}, 1000.0).endswith("[STOPPED]")
