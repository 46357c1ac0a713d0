"""What goes over the wire: the native JSON batch and InfluxDB line protocol.

docs/upstream.md documents the native format field by field for the city's developers.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from agent import __version__
from agent.outbox import Record
from agent.units import format_utc

if TYPE_CHECKING:
    from agent.pipeline import Measurement

NATIVE_CONTENT_TYPE = "application/json"
INFLUX_CONTENT_TYPE = "text/plain; charset=utf-8"
MEASUREMENTS = {"reading": "gauge_reading", "event": "gauge_event", "heartbeat": "gauge_heartbeat"}
EVENT_TAGS = ("kind", "fault")  # two events at one instant must not share a series


# -- the bodies of the records the daemon keeps (docs/upstream.md, field by field) ------------


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def reading_body(
    measurement: Measurement,
    *,
    level_m: float | None,
    state: str,
    warning: str,
    rate_m_per_h: float | None,
    raw_unit: str,
    clock_synchronised: bool | None,
    maintenance: bool = False,
) -> dict:
    """A `reading`: this sample, and the smoothed level and states the alarms used."""
    body = {
        "level_m": _rounded(level_m, 4),
        "reading_m": _rounded(measurement.level_m, 4),
        "raw": measurement.raw,
        "raw_unit": raw_unit,
        "ok": measurement.accepted,
        "reason": measurement.reason,
        "state": state,
        "warning": warning,
        "rate_m_per_h": _rounded(rate_m_per_h, 4),
    }
    if clock_synchronised is False:
        # Stamped by a clock that has not been set since boot (no RTC): upstream must not
        # trust `time`; the order of `seq` still holds.
        body["clock_synchronised"] = False
    if maintenance:
        # A technician is at the sensor (`gauge-agent maintenance on`): the value may be a
        # hand in the beam, not the water.
        body["maintenance"] = True
    return body


def event_body(kind: str, data: dict, clock_synchronised: bool | None) -> dict:
    """An `event`: its kind, then its fields exactly as `gauge-agent replay` prints them."""
    body = {"kind": kind, **data}
    if clock_synchronised is False:
        body["clock_synchronised"] = False
    return body


def heartbeat_body(
    *,
    uptime_s: float,
    outbox_stats: dict,
    disk_free_mb: float | None,
    cpu_temp_c: float | None,
    clock_synchronised: bool | None,
    state: str,
    warning: str,
    faults: list[str],
    false_echo_levels_m: list[float],
) -> dict:
    """A `heartbeat`: the gauge's own health, every `uplink.heartbeat_s`."""
    return {
        "uptime_s": round(uptime_s, 1),
        "version": __version__,
        "queue_depth": outbox_stats.get("depth"),
        "dropped": outbox_stats.get("dropped"),
        "dead_lettered": outbox_stats.get("dead_lettered"),
        "disk_free_mb": disk_free_mb,
        "cpu_temp_c": cpu_temp_c,
        "clock_synchronised": clock_synchronised,
        "state": state,
        "warning": warning,
        "faults": faults,
        "false_echo_levels_m": false_echo_levels_m,
    }


# -- the batches on the wire --------------------------------------------------------------------


def native_record(record: Record) -> dict:
    return {"seq": record.seq, "type": record.type, "time": format_utc(record.time), **record.body}


def encode_native(station: str, epoch: str, records: list[Record]) -> bytes:
    body = {
        "station": station,
        "epoch": epoch,
        "records": [native_record(record) for record in records],
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _escape_tag(value: str) -> str:
    return (
        str(value)
        .replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace("=", "\\=")
        .replace(" ", "\\ ")
        .replace("\n", "\\n")
    )


def _field(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        value = ",".join(str(item) for item in value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def influx_line(station: str, record: Record) -> str:
    """One point. The timestamp is the record's own time in nanoseconds, so a batch sent twice
    writes the same points again (InfluxDB keeps one point per series and timestamp)."""
    tags = {"station": station}
    fields = {"seq": record.seq}
    for key, value in record.body.items():
        if record.type == "event" and key in EVENT_TAGS and value is not None:
            tags[key] = value
        else:
            fields[key] = value
    tag_text = ",".join(f"{_escape_tag(k)}={_escape_tag(v)}" for k, v in sorted(tags.items()))
    field_parts = []
    for key, value in sorted(fields.items()):
        encoded = _field(value)
        if encoded is not None:
            field_parts.append(f"{_escape_tag(key)}={encoded}")
    return (
        f"{MEASUREMENTS[record.type]},{tag_text} {','.join(field_parts)}"
        f" {int(round(record.time * 1e9))}"
    )


def encode_influx(station: str, records: list[Record]) -> bytes:
    return ("\n".join(influx_line(station, record) for record in records) + "\n").encode("utf-8")
