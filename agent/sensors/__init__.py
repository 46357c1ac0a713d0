"""Sensor drivers. Each turns one sample request into a burst of raw reads.

A driver has:
- `value_kind`: "distance" (sensor face to water) or "level" (depth/pressure -> level),
- `unit`: the name of the unit of its raw values (`m`, `cm`, `mm`, `kPa`, ...), and
  `unit_to_m`: metres per raw unit; `sensor.invalid_values` are in the raw unit,
- `read_burst() -> list[(raw value or None, reason or None)]`, never raising for a failed read,
- `close()`.
Hardware libraries are imported only by the driver of the configured kind.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

from agent.config import Config
from agent.errors import ConfigError

RawRead = tuple["float | None", "str | None"]


class SensorDriver(Protocol):
    value_kind: str
    unit: str
    unit_to_m: float

    def read_burst(self) -> list[RawRead]: ...

    def close(self) -> None: ...


def open_sensor(config: Config, simulate: bool = False,
                clock: Callable[[], float] = time.monotonic) -> SensorDriver:
    kind = "simulated" if simulate else config.sensor.kind
    if kind == "simulated":
        from agent.sensors.simulated import SimulatedSensor
        return SimulatedSensor(config, clock=clock)
    raise ConfigError([f"sensor.kind: {kind!r} has no driver in this version yet (the hardware"
                       " drivers are being added); use kind = \"simulated\" or run --simulate"])
