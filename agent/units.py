"""Units and time formatting: the vocabulary the drivers, the pipeline and the wire formats share.

Kept apart so that a sensor driver need not import the filter, nor the wire format the alarm
engine, to agree on what a centimetre or a UTC timestamp is.
"""

from __future__ import annotations

import datetime as dt

# What a raw value measures: "distance" from the sensor face down to the water (ultrasonic
# rangers), or "level" (pressure transmitters and recorded levels).
VALUE_KINDS = ("distance", "level")
# Metres per unit for the length units a sensor or a recording may give.
UNIT_TO_M = {"m": 1.0, "cm": 0.01, "mm": 0.001, "ft": 0.3048}


def format_utc(epoch: float) -> str:
    """`2015-05-24T04:00:00Z`; milliseconds only when the instant has them."""
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
