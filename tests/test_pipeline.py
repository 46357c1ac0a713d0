"""The measurement pipeline: validity, conversion, plausibility gate, median, rate of rise."""

from __future__ import annotations

import math

import pytest

from agent.pipeline import (
    ACQUIRING,
    IMPLAUSIBLE,
    INVALID_VALUE,
    NOT_A_NUMBER,
    OUT_OF_RANGE,
    UNCONFIRMED,
    Pipeline,
    RateOfRise,
    RollingMedian,
)
from tests.conftest import config_from

DISTANCE = config_from(
    {
        "calibration": {"sensor_elevation_m": 10.40},
        "sensor": {"min_range_m": 0.25, "max_range_m": 4.0, "invalid_values": [9999, 5000]},
        "filter": {"acquire_samples": 1},
    }
)


def test_distance_becomes_level_below_the_sensor_face():
    pipeline = Pipeline(DISTANCE, "distance", 1.0)
    measurement = pipeline.process(0.0, 3.1)
    assert measurement.accepted and measurement.level_m == pytest.approx(7.3)


@pytest.mark.parametrize(
    "raw, reason",
    [
        (float("nan"), NOT_A_NUMBER),
        (math.inf, NOT_A_NUMBER),
        (9999.0, INVALID_VALUE),
        (5000.0, INVALID_VALUE),
        (0.10, OUT_OF_RANGE),
        (4.5, OUT_OF_RANGE),
    ],
)
def test_invalid_readings_are_no_reading_with_their_reason(raw, reason):
    measurement = Pipeline(DISTANCE, "distance", 1.0).process(0.0, raw)
    assert (measurement.accepted, measurement.valid, measurement.level_m, measurement.reason) == (
        False,
        False,
        None,
        reason,
    )


def test_invalid_values_are_compared_in_the_sensors_own_unit():
    pipeline = Pipeline(DISTANCE, "distance", 0.001)
    assert pipeline.process(0.0, 5000).reason == INVALID_VALUE  # 5000 mm code, not 5000 m
    assert pipeline.process(60.0, 3100).level_m == pytest.approx(7.3)


def test_pressure_level_uses_offset_and_scale():
    config = config_from(
        {"calibration": {"offset_m": 5.0, "scale": 1.02}, "filter": {"acquire_samples": 1}}
    )
    assert Pipeline(config, "level", 1.0).process(0.0, 2.0).level_m == pytest.approx(7.04)


def test_feet_are_converted():
    config = config_from({"filter": {"acquire_samples": 1}})
    assert Pipeline(config, "level", 0.3048).process(0.0, 10.0).level_m == pytest.approx(3.048)


def test_burst_median_ignores_sensor_codes_and_no_echo():
    pipeline = Pipeline(DISTANCE, "distance", 1.0)
    burst = [(3.10, None), (9999.0, None), (None, "no_echo"), (3.12, None), (3.11, None)]
    assert pipeline.process_burst(0.0, burst).level_m == pytest.approx(10.40 - 3.11)


def test_a_burst_median_that_equals_a_sensor_code_is_still_the_water():
    # 5000 mm is a code, but 4990 and 5010 are real ranges whose median happens to be 5000.
    config = config_from(
        {
            "sensor": {"max_range_m": 6.0, "invalid_values": [5000]},
            "calibration": {"sensor_elevation_m": 10.40},
            "filter": {"acquire_samples": 1},
        }
    )
    measurement = Pipeline(config, "distance", 0.001).process_burst(
        0.0, [(4990.0, None), (5010.0, None)]
    )
    assert measurement.accepted and measurement.level_m == pytest.approx(5.40)


def test_burst_with_no_valid_read_reports_the_most_common_reason():
    pipeline = Pipeline(DISTANCE, "distance", 1.0)
    burst = [(None, "timeout"), (None, "no_echo"), (None, "no_echo"), (9999.0, None)]
    measurement = pipeline.process_burst(0.0, burst)
    assert (measurement.accepted, measurement.raw, measurement.reason) == (False, None, "no_echo")
    measurement = pipeline.process_burst(10.0, [(0.1, None), (0.1, None), (None, "timeout")])
    assert (measurement.raw, measurement.reason) == (0.1, OUT_OF_RANGE)


# -- plausibility gate (its own rules are in test_gate.py) -----------------------------------


def test_a_spike_is_rejected_and_does_not_move_the_estimate():
    pipeline = Pipeline(DISTANCE, "level", 1.0)
    results = [
        pipeline.process(t * 10.0, level) for t, level in enumerate([7.00, 7.01, 9.50, 7.00, 7.02])
    ]
    assert [m.accepted for m in results] == [True, True, False, True, True]
    assert results[2].reason == IMPLAUSIBLE
    assert results[2].smoothed_m == results[1].smoothed_m  # the estimate did not move


def test_a_confirmed_jump_restarts_the_median_so_old_readings_do_not_outvote_it():
    pipeline = Pipeline(config_from({"filter": {"acquire_samples": 1, "window": 5}}), "level", 1.0)
    for i in range(5):
        pipeline.process(10.0 * i, 7.00)
    # An hour of silence; the water rose 0.6 m meanwhile. The first reading waits for the next.
    first = pipeline.process(3640.0, 7.60)
    second = pipeline.process(3650.0, 7.61)
    assert (first.accepted, first.reason, first.smoothed_m) == (False, UNCONFIRMED, 7.00)
    assert second.accepted and second.smoothed_m == pytest.approx(7.605)


def test_start_up_needs_agreeing_readings_so_a_first_spike_is_not_the_water():
    pipeline = Pipeline(config_from({"filter": {"acquire_samples": 3}}), "level", 1.0)
    results = [
        pipeline.process(t * 10.0, level) for t, level in enumerate([9.80, 7.00, 7.01, 7.00, 7.02])
    ]
    assert [m.reason for m in results] == [ACQUIRING, IMPLAUSIBLE, ACQUIRING, None, None]
    assert results[3].smoothed_m == pytest.approx(7.00)


# -- smoothing and rate ----------------------------------------------------------------------


def test_rolling_median_over_the_window():
    median = RollingMedian(window=5)
    outputs = [median.add(v) for v in [1, 2, 9, 3, 4, 5, 6]]
    assert outputs == [1, 1.5, 2, 2.5, 3, 4, 5]
    median.reset()
    assert median.add(7.4) == 7.4


def test_rate_is_the_least_squares_slope_in_metres_per_hour():
    rate = RateOfRise(window_s=1800.0)
    result = None
    for i in range(181):  # 30 minutes every 10 s, rising 6 cm/h
        result = rate.add(1.7e9 + 10.0 * i, 7.0 + 0.06 * (10.0 * i) / 3600.0)
    assert result == pytest.approx(0.06, abs=1e-9)


def test_rate_is_unknown_until_half_the_window_is_covered():
    rate = RateOfRise(window_s=1800.0)
    assert [rate.add(10.0 * i, 7.0) for i in range(3)] == [None, None, None]
    assert all(rate.add(10.0 * i, 7.0) is None for i in range(3, 90))
    assert rate.add(900.0, 7.0) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
def test_rate_keeps_its_precision_over_a_year_of_epoch_seconds():
    rate = RateOfRise(window_s=1800.0)
    start = 1.7e9
    result = None
    for i in range(3 * 365 * 24 * 6):  # every 10 minutes for three years, 1 cm/h with a wiggle
        t = start + 600.0 * i
        result = rate.add(t, 5.0 + 0.01 * (600.0 * i) / 3600.0 + 0.001 * (-1) ** i)
    # The same slope computed from scratch over the points in the window, in small numbers.
    xs = [t - start for t, _ in rate.points]
    ys = [v for _, v in rate.points]
    n, mean_x, mean_y = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    assert n == 4
    assert result == pytest.approx(slope * 3600.0, abs=1e-9)


def test_a_sensor_code_after_scaling_is_still_the_code():
    """A Modbus register of 9999 times a scale of 0.1 is 999.9000000000001, which never
    equalled the configured 999.9: the code was taken for a level."""
    config = config_from({"sensor": {"invalid_values": [999.9]}, "filter": {"acquire_samples": 1}})
    pipeline = Pipeline(config, "level", 1.0)
    assert pipeline.process(0.0, 9999 * 0.1).reason == INVALID_VALUE
    assert pipeline.process(10.0, 999.8).reason != INVALID_VALUE
