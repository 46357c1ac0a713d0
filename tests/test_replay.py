"""`gauge-agent replay` on the real recordings and on messy field files, through the real CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import Config
from agent.replay import ReplayOptions, run_replay
from tests.conftest import run_cli, shared_data
from tests.recordings import USGS_RIVER_RATE, floodnet_settings, usgs_settings


def replay(*args: str) -> tuple[list[dict], str]:
    result = run_cli("replay", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def brief(events: list[dict]) -> list[tuple]:
    out = []
    for e in events:
        value = {
            "level": e.get("state"),
            "siren": e.get("pattern"),
            "rate": e.get("active"),
            "fault": (e.get("fault"), e.get("active")),
        }[e["kind"]]
        out.append((e["time"], e["kind"], value))
    return out


def test_brays_bayou_tax_day_flood_raises_every_level_when_the_stage_crossed_it():
    """Brays Bayou at Houston (USGS 08075000), 15-minute stage in feet.

    Thresholds stated for the test: waspada 7.0 m (23.0 ft), siaga 9.0 m (29.5 ft), awas
    11.0 m (36.1 ft). With 15-minute data the median window is one sample, stale after two
    missed samples. Read off the file (local time is UTC-5):
    - 23:15 CDT 17 Apr (04:15Z): 23.17 ft = 7.06 m, the first stage above 7.0 m -> waspada;
      02:00 CDT (07:00Z): 22.78 ft = 6.94 m, below 7.0 - 0.05 m; 15 min later -> normal.
    - 05:30 CDT (10:30Z) 23.09 ft -> waspada; 06:00 CDT (11:00Z) 30.16 ft = 9.19 m -> siaga;
      06:45 CDT (11:45Z) 37.71 ft = 11.49 m -> awas (the 12.9 ft/h Tax Day rise).
    - 19:00 CDT (00:00Z 19 Apr) 35.64 ft = 10.86 m < 10.95 m: awas steps down 15 min later.
    """
    events, summary = replay(
        str(shared_data("usgs_tax_day_2016.csv")),
        *usgs_settings("08075000"),
        "--set",
        USGS_RIVER_RATE,
        "--set",
        "alarm.rate.enabled=false",
        "--set",
        "alarm.stale_after_s=1800",
        "--set",
        "filter.window=1",
        "--set",
        "filter.reject_to_fault_s=3600",
    )
    assert brief(events)[:9] == [
        ("2016-04-18T04:15:00Z", "level", "waspada"),
        ("2016-04-18T07:15:00Z", "level", "normal"),
        ("2016-04-18T10:30:00Z", "level", "waspada"),
        ("2016-04-18T11:00:00Z", "level", "siaga"),
        ("2016-04-18T11:00:00Z", "siren", "intermittent"),
        ("2016-04-18T11:45:00Z", "level", "awas"),
        ("2016-04-18T11:45:00Z", "siren", "continuous"),
        ("2016-04-19T00:15:00Z", "level", "siaga"),
        ("2016-04-19T00:15:00Z", "siren", "intermittent"),
    ]
    assert events[5] == {
        "time": "2016-04-18T11:45:00Z",
        "kind": "level",
        "state": "awas",
        "previous": "siaga",
        "level_m": 11.494,
    }
    # The siren sounds only in the Tax Day flood; no fault in a clean USGS series.
    sirens = [e for e in events if e["kind"] == "siren"]
    assert all("2016-04-18T11" <= e["time"] <= "2016-04-19T05" for e in sirens)
    assert not [e for e in events if e["kind"] == "fault"]
    assert "1056 samples" in summary and "3168 filtered out" in summary


def test_brays_bayou_rate_alarm_warns_before_the_first_threshold():
    events, _ = replay(
        str(shared_data("usgs_tax_day_2016.csv")),
        *usgs_settings("08075000"),
        "--set",
        USGS_RIVER_RATE,
        "--set",
        "alarm.rate.rise_m_per_h=0.3",
        "--set",
        "alarm.rate.window_s=3600",
        "--set",
        "alarm.stale_after_s=1800",
        "--set",
        "filter.window=1",
        "--set",
        "filter.reject_to_fault_s=3600",
    )
    on_the_day = [e for e in events if e["time"].startswith("2016-04-18")]
    first_rate = next(e for e in on_the_day if e["kind"] == "rate")
    first_level = next(e for e in on_the_day if e["kind"] == "level")
    assert first_rate["active"] and first_rate["time"] < first_level["time"]


def floodnet(
    *extra: str, name: str = "duly_pro_vervet", street_mm: int = 2754
) -> tuple[list[dict], str]:
    """A FloodNet street sensor as tests/recordings.py sets it up."""
    return replay(
        str(shared_data(f"floodnet_{name}.csv")),
        *floodnet_settings(street_mm),
        *extra,
    )


@pytest.mark.slow
def test_floodnet_street_flood_warns_once_and_never_sounds_for_noise():
    """Read off the file: dist_mm falls below 2654 (0.10 m of water) at 23:37Z on 3 June and
    below 2554 (0.20 m) at 23:51Z; the deepest reading is 2483 mm (0.27 m) at 00:27Z, so awas
    is never reached; the water is under 0.08 m again by 01:40Z. On 6 June it touches 0.10 m
    (2627 mm at the deepest): waspada only. Everything else is centimetre noise and 3,297
    maximum-range codes, which must not sound anything.
    """
    events, summary = floodnet()
    levels = [(e["time"][:16], e["state"]) for e in events if e["kind"] == "level"]
    assert levels[:2] == [("2023-06-03T23:37", "waspada"), ("2023-06-03T23:51", "siaga")]
    assert [state for _, state in levels] == [
        "waspada",
        "siaga",
        "waspada",
        "normal",
        "waspada",
        "normal",
    ]
    assert levels[4][0].startswith("2023-06-06")
    sirens = [(e["time"][:16], e["pattern"]) for e in events if e["kind"] == "siren"]
    assert [pattern for _, pattern in sirens] == ["intermittent", "off"]
    assert "2023-06-03T23:51" <= sirens[0][0] and sirens[1][0] < "2023-06-04T02:00"
    assert "31967 samples" in summary and "3297 no reading" in summary


@pytest.mark.slow
def test_floodnet_code_runs_raise_stale_at_the_moment_it_would_have_fired_live():
    events, _ = floodnet()
    stale = [e for e in events if e["kind"] == "fault" and e["fault"] == "stale"]
    assert stale and all(e["time"] >= "2023-06-17" for e in stale)
    # A fault fires inside a gap: 600 s after the last valid reading, not at the next row.
    first = stale[0]
    assert first == {
        "time": "2023-06-17T02:39:15.089Z",
        "kind": "fault",
        "fault": "stale",
        "active": True,
    }


@pytest.mark.slow
def test_floodnet_object_that_comes_and_goes_for_weeks_never_sounds_and_is_learned():
    """duly_star_bee: no water at all. The street is at about 2507 mm; from 5 June an object at
    about 1650-1720 mm (0.8 m above the street: an Awas depth) comes and goes about a thousand
    times, up to 15 hours at a stretch, and is 96 % of the readings by the last week. The old
    gate sounded Awas for up to 97 hours at a stretch. Expected: not one level or siren event,
    every reading at the object refused (`implausible` while the object stays, a false echo
    once learned), the object learned and listed with how often it came, and the street
    followed to the end."""
    events, summary = floodnet(name="duly_star_bee", street_mm=2507)
    assert [e for e in events if e["kind"] in ("level", "siren", "rate")] == []
    faults = {e["fault"] for e in events if e["kind"] == "fault"}
    assert faults == {"implausible", "stale"}  # stale: the LoRa uplink has gaps over 10 min
    counts = dict(
        part.split(" ", 1)[::-1] for part in summary.split("samples (")[1].split(")")[0].split(", ")
    )
    assert int(counts["accepted"]) > 5800 and int(counts["false echo"]) > 11000
    assert "siren on 0.00 h" in summary and "normal 724.0 h" in summary
    first_echo = summary.split("false echoes: ")[1].split(", ")[0]
    distance_mm = float(first_echo.split(" mm")[0])
    seen = int(first_echo.split("seen ")[1].split(" times")[0])
    assert 1640 < distance_mm < 1730 and seen > 900


@pytest.mark.slow
def test_floodnet_small_floods_amid_noisy_echoes_are_seen_and_objects_never_sound():
    """ugliest_cyan_elephant: the street at about 1850 mm with a noisy echo; objects at about
    1480 and 1300 mm (0.37 and 0.54 m: Awas depths) that appear for a reading or a few, double
    echoes near 3600 mm, and small real floods. Read off the file: on 12 June from 23:30 the
    distance falls from about 1790 to 1688 mm in 8 minutes (about 0.16 m of water); on 27 June
    from 04:38 it falls to 1692 mm. Both must be warned (Waspada) at the sample rate; the old
    gate sounded Awas twice for objects (15 and 24 June). Other Waspada spells are water on the
    street in rain (25 June: 1740-1760 mm for two hours)."""
    events, summary = floodnet(name="ugliest_cyan_elephant", street_mm=1850)
    levels = [(e["time"][:16], e["state"]) for e in events if e["kind"] == "level"]
    assert {state for _, state in levels} == {"waspada", "normal"}
    assert [e for e in events if e["kind"] == "siren"] == []
    assert ("2023-06-12T23:34", "waspada") in levels  # 4 min into the 8-minute fall
    assert ("2023-06-27T04:41", "waspada") in levels  # 3 min after it starts
    echoes = summary.split("false echoes: ")[1]
    for near_mm in (1482, 1309, 3606):  # the two objects and the double echo
        assert f"{near_mm} mm from the sensor" in echoes, echoes


# -- messy files -----------------------------------------------------------------------------

MESSY = """time,level,note
2024-01-01T00:00:00Z,7.00,ok

2024-01-01T00:00:10Z,7.01,ok
2024-01-01T00:00:10Z,7.50,duplicate time
2024-01-01T00:00:05Z,7.02,out of order
2024-01-01T00:00:20Z,nan,sensor said nan
2024-01-01T00:00:30Z,ERR,
2024-01-01T00:00:40Z,,empty
2024-01-01T00:00:50Z,7.03
2024-01-01T00:01:00Z,7.03,extra,column
not-a-time,7.0,bad time
2024-01-01 08:01:10+08:00,7.04,offset
2024-01-01T00:01:20,7.05,naive is UTC
1704067290,7.06,epoch seconds
2024-01-01T00:01:40Z,7.60,rising
2024-01-01T00:01:50Z,7.61,rising
2024-01-01T00:02:00Z,7.62,rising
"""


def test_messy_file_is_replayed_to_the_end_and_every_problem_counted(tmp_path):
    path = tmp_path / "messy.csv"
    path.write_text(MESSY, encoding="utf-8")
    events, summary = replay(
        str(path), "--set", "filter.window=1", "--set", "filter.max_rate_m_per_min=10"
    )
    assert brief(events) == [("2024-01-01T00:01:40Z", "level", "waspada")]
    for part in [
        "17 rows",
        "11 samples",
        "3 no reading",
        "1 blank",
        "2 malformed",
        "1 bad time",
        "1 out of order",
        "1 duplicate time",
    ]:
        assert part in summary, (part, summary)


def test_where_keeps_only_matching_rows(tmp_path):
    path = tmp_path / "two.csv"
    rows = ["time,station,level"] + [
        f"{i * 60},{s},{v}" for i in range(10) for s, v in (("a", 7.0), ("b", 9.0))
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    events, summary = replay(str(path), "--where", "station=a")
    assert events == [] and "10 filtered out" in summary
    events, _ = replay(str(path), "--where", "station=b", "--set", "filter.window=1")
    assert [e["state"] for e in events if e["kind"] == "level"] == ["awas"]


def test_missing_column_names_the_columns_there_are(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("timestamp,stage\n0,1\n", encoding="utf-8")
    result = run_cli("replay", str(path), "--time-column", "timestamp")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"gauge-agent: {path}: no column 'level'"
        " (columns: 'timestamp', 'stage'); choose one with"
        " --value-column"
    )


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["replay", "/nonexistent.csv"], 1, "gauge-agent: /nonexistent.csv: no such file"),
        (
            ["replay", "x.csv", "--set", "alarm.of_delay_s=1"],
            78,
            "alarm.of_delay_s: unknown key (did you mean 'off_delay_s'?)",
        ),
        (
            ["replay", "x.csv", "--where", "nothing"],
            2,
            "gauge-agent replay: --where 'nothing' must look like COLUMN=VALUE",
        ),
    ],
)
def test_replay_errors_have_exit_codes_and_one_clear_line(args, code, message, tmp_path):
    (tmp_path / "x.csv").write_text("time,level\n", encoding="utf-8")
    result = run_cli(*args, cwd=tmp_path)
    assert (result.returncode, result.stderr.strip()) == (code, message)
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_plot_is_written_as_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "replay.png"
    _, summary = replay(
        str(shared_data("usgs_tax_day_2016.csv")),
        *usgs_settings("08075000"),
        "--plot",
        str(out),
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000  # a real picture, not an empty canvas
    assert f"plot written to {out}" in summary


@pytest.mark.slow
def test_json_lines_are_in_time_order(tmp_path):
    events, _ = floodnet()
    times = [e["time"] for e in events]
    assert times == sorted(times)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.slow
def test_progress_goes_to_stderr_only_on_a_terminal(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(
        "time,level\n" + "".join(f"{i * 10},{7.0 + (i % 7) / 1000}\n" for i in range(45000))
    )
    out, terminal, pipe = io.StringIO(), Terminal(), io.StringIO()
    run_replay(path, Config(), ReplayOptions(), out=out, err=terminal)
    run_replay(path, Config(), ReplayOptions(), out=io.StringIO(), err=pipe)
    assert terminal.getvalue().count("\rreplay: ") == 2  # at 20,000 and 40,000 samples
    assert "\r" not in pipe.getvalue() and pipe.getvalue().startswith("replay: 45000 rows")
    assert out.getvalue() == ""  # millimetre ripples at 7.0 m: nothing happened, nothing printed


# -- issue #10: odd recordings and paths get counted or a one-line error ---------------------


@pytest.mark.parametrize(
    "text, value",
    [
        ("7.5", 7.5),
        ("-0.25", -0.25),
        ("+8", 8.0),
        (".5", 0.5),
        ("8.", 8.0),
        ("7.5e0", 7.5),
        (" 7.5 ", 7.5),
        ("7_5", None),
        ("١٢", None),
        ("nan", None),
        ("inf", None),
        ("-Infinity", None),
        ("1e400", None),
        ("7,5", None),
        ("0x10", None),
        ("", None),
        ("7.5.1", None),
    ],
)
def test_numbers_are_parsed_as_loggers_write_them_and_nothing_else(text, value):
    from agent.replay import parse_value

    assert parse_value(text) == value


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet="0123456789+-.eE_ \t\x1c\x1f\xa0naifINFxX", max_size=12),
        st.floats().map(repr),
    )
)
def test_a_number_is_what_the_logger_grammar_says_and_nothing_else(text):
    """parse_value lets float() do the work; the grammar (_NUMBER) is the reference."""
    import math

    from agent.replay import _NUMBER, parse_value

    stripped = text.strip()
    expected = None
    if _NUMBER.fullmatch(stripped) and math.isfinite(float(stripped)):
        expected = float(stripped)
    assert parse_value(text) == expected


@pytest.mark.parametrize(
    "text, moment",
    [
        ("1700000000", 1700000000.0),
        ("2024-01-01T00:00:00Z", 1704067200.0),
        ("2024-01-01 07:00:00+07:00", 1704067200.0),
        ("1_700_000_000", None),
        ("١٧٠٠٠٠٠٠٠٠", None),
        ("1e300", None),
        ("nan", None),
        ("9999-12-31T23:59:59+00:00", None),
        ("0001-01-01T00:00:00+14:00", None),
        ("2024-01-01T00:00:00z", 1704067200.0),
        ("2024-01-01", 1704067200.0),
        ("2023-05-29 12:05:02.009000+00:00", 1685361902.009),
        ("20240101T000000Z", 1704067200.0),
        ("1.0e-5", 1e-05),
        ("2024-1-01", None),
    ],
)
def test_times_are_iso_8601_or_epoch_seconds_within_reason(text, moment):
    from agent.replay import parse_time

    assert parse_time(text) == moment


def test_python_only_number_spellings_never_sound_an_alarm(tmp_path):
    """`7_5` read as 75 m sounded Awas; Arabic-Indic digits became a level."""
    path = tmp_path / "odd.csv"
    rows = ["time,level"] + [f"{i * 10},7.0" for i in range(30)]
    rows += [f"{300 + i * 10},{odd}" for i, odd in enumerate(["7_5", "٧٥", "1_0", "nan"] * 5)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    events, summary = replay(str(path))
    assert [e for e in events if e["kind"] == "level"] == []
    assert "20 no reading" in summary


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "utf-16"])
def test_paths_and_encodings_that_cannot_be_replayed_are_one_line_with_exit_1(tmp_path, kind):
    import os

    path = {
        "directory": tmp_path,
        "fifo": tmp_path / "fifo",
        "device": Path("/dev/zero"),
        "utf-16": tmp_path / "excel.csv",
    }[kind]
    if kind == "fifo":
        os.mkfifo(path)
    if kind == "utf-16":
        path.write_text("time,level\n0,7.0\n", encoding="utf-16")
    result = run_cli("replay", str(path), timeout=20)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"gauge-agent: {path}: ")


def test_nul_bytes_and_giant_fields_are_counted_rows_not_tracebacks(tmp_path):
    path = tmp_path / "damaged.csv"
    path.write_bytes(b'time,level\n0,7.0\n10,7.\x000\n20,"' + b"x" * 200_000 + b'"\n30,7.0\n')
    result = run_cli("replay", str(path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "1 malformed" in result.stderr


def test_a_recording_on_standard_input(tmp_path):
    import subprocess
    import sys

    rows = "time,level\n" + "".join(f"{i * 10},9.0\n" for i in range(10))
    result = subprocess.run(
        [sys.executable, "-m", "agent", "replay", "-", "--set", "filter.window=1"],
        input=rows,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert '"state": "awas"' in result.stdout


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_replay_to_the_end_or_get_one_line(raw):
    """Arbitrary bytes: counted skips or a one-line ReplayInputError, never a traceback."""
    import tempfile

    from agent.errors import ReplayInputError

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.csv"
        path.write_bytes(b"time,level\n" + raw)
        try:
            counts = run_replay(
                path, Config(), ReplayOptions(), out=io.StringIO(), err=io.StringIO()
            )
        except ReplayInputError as error:
            assert "\n" not in str(error)
            return
    assert counts.samples <= counts.rows


ROW = st.lists(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
    | st.sampled_from(["7.5", "1700000000", "2024-01-01T00:00:00Z", "", "nan"]),
    max_size=5,
)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(st.lists(ROW, max_size=30), st.sampled_from(["time", "t"]), st.sampled_from(["level", "v"]))
def test_any_csv_shape_replays_to_the_end_with_every_row_accounted_for(
    rows, time_column, value_column
):
    import csv
    import tempfile

    from agent.errors import ReplayInputError

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "shape.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["time", "level"])
            writer.writerows(rows)
        try:
            counts = run_replay(
                path,
                Config(),
                ReplayOptions(time_column=time_column, value_column=value_column),
                out=io.StringIO(),
                err=io.StringIO(),
            )
        except ReplayInputError as error:
            assert (time_column, value_column) != ("time", "level"), error
            return
    accounted = (
        counts.samples
        + counts.blank
        + counts.malformed
        + counts.filtered_out
        + counts.bad_time
        + counts.duplicate_time
        + counts.out_of_order
    )
    assert accounted == counts.rows
