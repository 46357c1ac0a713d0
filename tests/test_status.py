"""The one-line status a technician reads."""

from __future__ import annotations

from agent.status import one_line

BASE = {
    "updated": "2026-11-27T06:41:20Z",
    "updated_epoch": 1000.0,
    "station": "benanga-01",
    "running": True,
    "interval_s": 2.0,
    "level_m": 7.912,
    "rate_m_per_h": 0.064,
    "state": "siaga",
    "warning": "siaga",
    "faults": ["auth"],
    "siren": {"pattern": "intermittent", "silenced": True},
}


def test_shows_level_states_faults_queue_and_last_upload():
    status = {
        **BASE,
        "outbox": {"depth": 40, "pending": 2},
        "uplink": {"last_upload": 970.0, "last_error": "HTTP 401: token refused"},
    }
    assert one_line(status, 1001.0) == (
        "2026-11-27T06:41:20Z  benanga-01  level  7.912 m  rate +0.064 m/h  state SIAGA"
        "  warning SIAGA  siren intermittent (silenced)  faults auth  queue 42"
        "  last upload 31 s ago (HTTP 401: token refused)"
    )


def test_store_only_and_stale_status_say_so():
    status = {**BASE, "outbox": {"depth": 3, "pending": 0}, "uplink": None}
    line = one_line(status, 1100.0)
    assert "queue 3 (store only)" in line and line.endswith("[STALE 100 s]")
    assert one_line({**BASE, "running": False}, 1000.0).endswith("[STOPPED]")


# -- issue #10: a damaged or half-written status file is an answer, not a traceback ----------

import math  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.conftest import run_cli  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(BASE) + ["outbox", "uplink", "pending"]), JSON))
def test_any_field_of_any_type_still_gives_one_line(fields):
    line = one_line({**BASE, **fields}, 1001.0)
    assert "  level " in line and "  warning " in line and "  faults " in line


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"updated": "2026-11',
        b"[1, 2]",
        b"\xff\xfe{}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"level_m": "high", "faults": 3, "siren": [], "outbox": {"depth": "x"}}',
    ],
)
@pytest.mark.slow
@pytest.mark.parametrize("watch", [False, True])
def test_status_and_watch_survive_a_damaged_or_half_written_file(tmp_path, content, watch):
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nruntime_dir = "{tmp_path / "run"}"\n', encoding="utf-8")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "status.json").write_bytes(content)
    args = ["status", "--config", str(config)] + (["--watch", "0.1"] if watch else [])
    try:
        result = run_cli(*args, timeout=1.5)
        output, code = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as error:  # --watch kept watching: it did not die
        assert watch
        output = "".join(
            part.decode() if isinstance(part, bytes) else part or ""
            for part in (error.stdout, error.stderr)
        )
        code = None
    assert "Traceback" not in output
    if not watch:
        assert code == 1 and len(output.strip().splitlines()) == 1, output


@pytest.mark.parametrize("period", ["0", "-1", "nan", "inf", "soon"])
def test_a_watch_period_that_cannot_work_is_a_usage_error(period):
    result = run_cli("status", "--watch", period)
    assert result.returncode == 2 and "from 0.1 to 3600" in result.stderr


def test_is_finite_guard_for_numbers():
    line = one_line({**BASE, "level_m": math.inf, "rate_m_per_h": math.nan}, 1001.0)
    assert "level ---" in line and "rate ---" in line


# -- issue #12: what a technician asks first, on a second line -------------------------------

from agent.status import details_line  # noqa: E402


def test_the_details_line_answers_the_technicians_first_questions():
    status = {
        **BASE,
        "last_valid_s_ago": 4.2,
        "clock_synchronised": False,
        "calibration": {"sensor_elevation_m": 10.47, "changed": "2026-11-30 by budi"},
        "outbox": {"depth": 40, "dropped": 0, "dead_lettered": 2},
        "uplink": {"last_upload": 970.0},
    }
    assert details_line(status, 1001.0) == (
        "  last valid reading 4 s ago  clock NOT synchronised  calibrated 2026-11-30 by budi"
        "  queue 40  dropped 0  dead letters 2  last upload 31 s ago"
    )
    # The same queue as the first line: what is in the file and what waits to go in.
    with_pending = {**status, "outbox": {"depth": 40, "pending": 2, "dropped": 0}}
    assert "  queue 42" in one_line(with_pending, 1001.0)
    assert "  queue 42  dropped 0" in details_line(with_pending, 1001.0)
    assert details_line(BASE, 1001.0) == (
        "  last valid reading ? s ago  clock unknown  never calibrated  queue ?  dropped ?"
        "  dead letters ?  store only"
    ).replace("? s ago", "?")


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["last_valid_s_ago", "clock_synchronised", "calibration", "outbox", "uplink"]
        ),
        JSON,
    )
)
def test_any_field_of_any_type_still_gives_a_details_line(fields):
    line = details_line({**BASE, **fields}, 1001.0)
    assert "last valid reading" in line and "  queue " in line
