"""What goes over the wire: the native JSON batch and InfluxDB line protocol.

docs/upstream.md documents the native format field by field for the city's developers.
"""

from __future__ import annotations

import json
import math

from agent.outbox import Record
from agent.units import format_utc

NATIVE_CONTENT_TYPE = "application/json"
INFLUX_CONTENT_TYPE = "text/plain; charset=utf-8"
MEASUREMENTS = {"reading": "gauge_reading", "event": "gauge_event", "heartbeat": "gauge_heartbeat"}
EVENT_TAGS = ("kind", "fault")  # two events at one instant must not share a series


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
