"""How the development recordings (../shared/data) are replayed: the settings the replay tests
state for them, shared with bench/replay_equivalence.py so both replay the same thing."""

from __future__ import annotations

USGS_THRESHOLDS = (
    'alarm.levels=[{name="waspada",above_m=7.0},{name="siaga",above_m=9.0},'
    '{name="awas",above_m=11.0}]'
)
# A flashy urban bayou, not the reservoir: Brays Bayou rose 3.9 m in an hour on Tax Day, so the
# river-gauge example from config.toml (0.5 m/min), not the Benanga default.
USGS_RIVER_RATE = "filter.max_rate_m_per_min=0.5"
USGS_STATIONS = ("08074000", "08073600", "08075000", "08075500")


def usgs_settings(station: str) -> list[str]:
    """One of the four Houston gauges in usgs_tax_day_2016.csv: stage in feet, ISO times with
    an offset, the thresholds the tests state (7 / 9 / 11 m)."""
    return [
        "--time-column",
        "timestamp",
        "--value-column",
        "gage_height_ft",
        "--unit",
        "ft",
        "--where",
        f"station_id={station}",
        "--set",
        USGS_THRESHOLDS,
    ]


# Streets under the FloodNet sensors, in mm from the sensor (their READMEs).
FLOODNET_STREET_MM = {"duly_pro_vervet": 2754, "duly_star_bee": 2507, "ugliest_cyan_elephant": 1850}


def floodnet_settings(street_mm: int) -> list[str]:
    """A FloodNet street sensor: raw MB7389 distances in mm, the street `street_mm` below it.

    Thresholds stated for the tests, as water depth on the street: waspada 0.10 m, siaga
    0.20 m, awas 0.30 m; the sensor codes 9999/5000/300/500 are "no reading". The rate limit is
    the shipped one (1.5 m/h): faster than any real rise in these recordings (the fastest,
    ugliest_cyan_elephant on 12 June, is about 0.75 m/h)."""
    return [
        "--value-column",
        "dist_mm",
        "--value-kind",
        "distance",
        "--unit",
        "mm",
        "--set",
        "sensor.invalid_values=[9999, 5000, 300, 500]",
        "--set",
        "sensor.max_range_m=5.0",
        "--set",
        f"calibration.sensor_elevation_m={street_mm / 1000}",
        "--set",
        'alarm.levels=[{name="waspada",above_m=0.10},{name="siaga",above_m=0.20},'
        '{name="awas",above_m=0.30}]',
        "--set",
        "alarm.deadband_m=0.02",
        "--set",
        "alarm.stale_after_s=600",
        "--set",
        "alarm.rate.rise_m_per_h=0.15",
    ]
