"""The alarm engine, driven through the real pipeline with value sequences.

Times are seconds; samples every 10 s unless a test says otherwise. The rolling median is set to
one sample where a test is about the engine, so each expectation can be read off the sequence.
"""

from __future__ import annotations

import pytest

from agent.alarm import AlarmEngine
from agent.pipeline import Pipeline
from tests.conftest import config_from
from tests.sequences import compact, ramp, run_sequence


def engine_config(**sections) -> object:
    data = {
        "filter": {"window": 1, "acquire_samples": 1, "max_rate_m_per_min": 100.0},
        "alarm": {
            "deadband_m": 0.05,
            "on_delay_s": 0.0,
            "off_delay_s": 900.0,
            "stale_after_s": 120.0,
            "rate": {"enabled": False},
        },
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return config_from(data)


def levels_only(events):
    return [(t, state) for t, kind, state in compact(events, ("level",))]


def test_rises_through_every_level_and_the_siren_follows():
    samples = ramp(0, 10, [7.0, 7.49, 7.50, 7.89, 7.90, 8.49, 8.50, 8.80])
    assert compact(run_sequence(engine_config(), samples)) == [
        (20, "level", "waspada"),
        (40, "level", "siaga"),
        (40, "siren", "intermittent"),
        (60, "level", "awas"),
        (60, "siren", "continuous"),
    ]


def test_a_jump_straight_above_awas_raises_awas_at_once():
    events = run_sequence(engine_config(), ramp(0, 10, [7.0, 7.0, 8.9]))
    assert compact(events) == [(20, "level", "awas"), (20, "siren", "continuous")]
    assert events[0].data == {"state": "awas", "previous": "normal", "level_m": 8.9}


def test_noise_inside_the_deadband_does_not_flap():
    wobble = [7.52, 7.47, 7.51, 7.46, 7.53, 7.455, 7.50] * 30  # around 7.50, never below 7.45
    events = run_sequence(engine_config(), ramp(0, 10, [7.0] + wobble))
    assert levels_only(events) == [(10, "waspada")]


def test_off_delay_steps_down_exactly_when_it_has_passed_even_inside_a_gap():
    config = engine_config(alarm={"stale_after_s": 100000.0})
    # Above waspada, then one reading below the deadband at t=30, then silence.
    events = run_sequence(config, [(0, 7.6), (10, 7.6), (20, 7.6), (30, 7.40), (2000, 7.40)])
    assert levels_only(events) == [(0, "waspada"), (930, "normal")]


def test_returning_above_the_clear_point_restarts_the_off_delay():
    config = engine_config()
    values = [7.6] + [7.40] * 60 + [7.46] + [7.40] * 95  # 10-min dip, back into the band, out
    assert levels_only(run_sequence(config, ramp(0, 10, values))) == [
        (0, "waspada"),
        (620 + 900, "normal"),
    ]


def test_escalation_is_never_held_back_by_a_running_off_delay():
    values = [7.95] + [7.80] * 30 + [8.60]  # siaga, clearing towards waspada, then awas
    events = run_sequence(engine_config(), ramp(0, 10, values))
    assert levels_only(events) == [(0, "siaga"), (310, "awas")]


def test_stepping_down_goes_to_the_level_the_water_is_at():
    values = [8.70, 8.70] + [7.52] * 100  # awas, then the water falls fast into waspada
    events = run_sequence(engine_config(), ramp(0, 10, values))
    assert compact(events) == [
        (0, "level", "awas"),
        (0, "siren", "continuous"),
        (20 + 900, "level", "waspada"),
        (20 + 900, "siren", "off"),
    ]
    assert events[2].data["previous"] == "awas"


def test_on_delay_ignores_a_short_excursion_and_raises_a_held_one_at_its_moment():
    config = engine_config(alarm={"on_delay_s": 60.0})
    short = ramp(0, 10, [7.0, 7.6, 7.6, 7.6, 7.0, 7.0])  # 30 s above: not raised
    held = [(100, 7.6), (110, 7.6), (200, 7.6)]  # held from t=100
    assert levels_only(run_sequence(config, short + held)) == [(160, "waspada")]


def test_a_zero_threshold_works():
    config = engine_config(
        alarm={"levels": [{"name": "wet", "above_m": 0.0}], "deadband_m": 0.01, "off_delay_s": 0.0}
    )
    events = run_sequence(config, ramp(0, 10, [-0.20, -0.05, 0.0, 0.03, -0.005, -0.02]))
    assert levels_only(events) == [(20, "wet"), (50, "normal")]


def test_rate_alarm_lifts_the_warning_and_clears_after_the_off_delay():
    config = engine_config(
        alarm={
            "rate": {"enabled": True, "rise_m_per_h": 0.05, "window_s": 600.0, "raises": "waspada"},
            "off_delay_s": 300.0,
        }
    )
    rising = [6.50 + 0.10 * i * 10 / 3600 for i in range(121)]  # 10 cm/h for 20 min
    flat = [rising[-1]] * 150
    events = run_sequence(config, ramp(0, 10, rising + flat))
    rate_events = [(e.time, e.data["active"]) for e in events if e.kind == "rate"]
    # Active as soon as half the window (300 s) is covered; the slope falls below the clear
    # level (0.025 m/h) within the 600 s window of flat water, then the off-delay runs.
    assert rate_events[0] == (300, True)
    assert rate_events[1][1] is False and 1200 + 300 < rate_events[1][0] <= 1200 + 600 + 300
    assert levels_only(events) == []  # the level never reached a threshold
    assert [e for e in events if e.kind == "siren"] == []  # waspada: lamp only, no siren


def test_warning_combines_rate_and_level():
    config = engine_config(
        alarm={
            "rate": {"enabled": True, "rise_m_per_h": 0.05, "window_s": 600.0, "raises": "siaga"}
        }
    )
    engine = AlarmEngine(config, 0.0)
    pipeline = Pipeline(config, "level", 1.0)
    for i in range(61):
        engine.run_until(i * 10.0)
        engine.update(pipeline.process(i * 10.0, 7.55 + 0.2 * i * 10 / 3600))
    assert (engine.state_name, engine.rate_active, engine.warning_name) == (
        "waspada",
        True,
        "siaga",
    )
    assert engine.siren_pattern == "intermittent"


# -- faults ----------------------------------------------------------------------------------


def test_stale_fires_inside_a_gap_at_its_own_moment_and_clears_on_a_reading():
    events = run_sequence(engine_config(), [(0, 7.0), (10, 7.0), (7200, 7.0)])
    assert compact(events) == [(130, "fault", ("stale", True)), (7200, "fault", ("stale", False))]


def test_no_readings_at_all_are_stale_too():
    events = run_sequence(engine_config(), ramp(0, 10, [None] * 20))
    assert compact(events) == [(120, "fault", ("stale", True))]


def test_implausible_after_reject_to_fault_and_clears_when_the_water_returns():
    config = engine_config(
        filter={
            "max_rate_m_per_min": 0.5,
            "reject_to_fault_s": 300.0,
            "window": 1,
            "acquire_samples": 1,
        }
    )
    values = [7.0] * 3 + [10.15] * 60 + [7.01]  # an object at the sensor face for 10 min
    events = run_sequence(config, ramp(0, 10, values))
    assert compact(events) == [
        (30 + 300, "fault", ("implausible", True)),
        (630, "fault", ("implausible", False)),
    ]


def test_out_of_range_readings_raise_out_of_range_and_stale():
    distance_config = config_from(
        {
            "filter": {"window": 1, "acquire_samples": 1, "reject_to_fault_s": 300.0},
            "alarm": {"rate": {"enabled": False}},
        }
    )
    events = run_sequence(
        distance_config, ramp(0, 10, [3.5, 3.5] + [4.8] * 40), value_kind="distance"
    )
    assert compact(events) == [
        (130, "fault", ("stale", True)),
        (320, "fault", ("out_of_range", True)),
    ]


def test_driver_errors_raise_the_sensor_fault_after_n_in_a_row():
    config = engine_config(sensor={"fail_to_fault": 3})
    engine = AlarmEngine(config, 0.0)
    pipeline = Pipeline(config, "level", 1.0)
    faults = []
    reads = [
        (7.0, None),
        (None, "timeout"),
        (None, "timeout"),
        (7.0, None),
        (None, "timeout"),
        (None, "crc_error"),
        (None, "crc_error"),
        (7.0, None),
    ]
    for i, (raw, reason) in enumerate(reads):
        events = engine.update(pipeline.process(10.0 * i, raw, reason))
        faults += [(e.time, e.data) for e in events]
    assert faults == [
        (60.0, {"fault": "sensor", "active": True, "reason": "crc_error"}),
        (70.0, {"fault": "sensor", "active": False}),
    ]


def test_stuck_readings_raise_stuck():
    config = engine_config(filter={"stuck_after_s": 600.0, "window": 1, "acquire_samples": 1})
    events = run_sequence(config, ramp(0, 10, [7.0, 7.01] + [7.02] * 70 + [7.03]))
    assert compact(events) == [(620, "fault", ("stuck", True)), (720, "fault", ("stuck", False))]


def test_a_gauge_lost_at_the_crest_keeps_the_warning_on():
    config = engine_config(alarm={"off_delay_s": 300.0})
    events = run_sequence(config, ramp(0, 10, [8.0, 8.6, 8.6] + [None] * 500))
    assert compact(events) == [
        (0, "level", "siaga"),
        (0, "siren", "intermittent"),
        (10, "level", "awas"),
        (10, "siren", "continuous"),
        (140, "fault", ("stale", True)),
    ]
    assert all(event.time < 140 or event.kind == "fault" for event in events)


def test_no_step_down_while_a_fault_is_active_and_a_fresh_off_delay_after_it():
    config = engine_config(alarm={"off_delay_s": 300.0})
    # awas, then the water reads low once, then the sensor dies for an hour, then low readings.
    samples = [(0, 8.6), (10, 8.0), (20, None)] + ramp(3620, 10, [8.0] * 40)
    events = run_sequence(config, samples)
    assert levels_only(events) == [(0, "awas"), (3620 + 300, "siaga")]
    assert compact(events, ("fault",)) == [
        (130, "fault", ("stale", True)),
        (3620, "fault", ("stale", False)),
    ]


@pytest.mark.parametrize(("threshold_m", "name"), [(7.5, "waspada"), (7.9, "siaga"), (8.5, "awas")])
def test_a_level_exactly_at_a_threshold_raises_it(threshold_m, name):
    # Steps of 0.01 m a minute: the gate follows them, so only the threshold decides.
    below = [round(threshold_m - 0.05 + i * 0.01, 3) for i in range(5)]
    events = run_sequence(engine_config(), ramp(0, 60, [*below, threshold_m]))
    assert levels_only(events)[-1] == (300, name)
    just_under = run_sequence(engine_config(), ramp(0, 60, [*below, threshold_m - 0.001]))
    assert [state for _, state in levels_only(just_under)].count(name) == 0
