"""Sensor drivers, one module each, found by the registry below.

A driver module declares
- `KIND`: the `sensor.kind` that selects it, `EXTRA`: the pyproject.toml extra that installs its
  hardware library (None when it needs none),
- `open_driver(config, clock) -> SensorDriver`, which imports the hardware library (never at
  module level: the registry imports every driver module to learn the kinds, and a Modbus gauge
  must not load Blinka),
and the driver it returns has
- `value_kind`: "distance" (sensor face to water) or "level" (depth/pressure -> level),
- `unit`: the name of the unit of its raw values (`m`, `cm`, `mm`, `kPa`, ...), and
  `unit_to_m`: metres per raw unit; `sensor.invalid_values` are in the raw unit,
- `read_burst(count) -> list[(raw value or None, reason or None)]`: `count` raw reads for one
  sample, never raising for a failed read (a read that fails is None with a short reason); it
  may stop early after a failed read when the rest would fail the same way (a silent bus),
- `close()`.
Adding a sensor is one module here plus its tests; tests/test_sensor_contract.py runs the same
contract against every registered driver. Its settings table, when it needs one, is a
`[sensor.<table>]` dataclass in agent/config/schema.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Protocol

from agent.config import Config
from agent.errors import ConfigError, InstallationError
from agent.i18n import _
from agent.registry import discover

RawRead = tuple["float | None", "str | None"]


class SensorDriver(Protocol):
    value_kind: str
    unit: str
    unit_to_m: float

    def read_burst(self, count: int) -> list[RawRead]: ...

    def close(self) -> None: ...


@cache
def drivers() -> dict[str, ModuleType]:
    """Every driver module in this package by its KIND (modules without one are helpers)."""
    return discover(__name__, __path__, "KIND")


def sensor_kinds() -> tuple[str, ...]:
    return tuple(drivers())


def open_sensor(
    config: Config,
    simulate: bool = False,
    clock: Callable[[], float] = time.monotonic,
    pin_factory=None,
) -> SensorDriver:
    """The configured driver, supervised. Hardware libraries are imported here, and only the
    ones the configured kind needs."""
    from agent.sensors.supervisor import SupervisedSensor

    settings = config.sensor
    kind = "simulated" if simulate else settings.kind
    module = drivers().get(kind)
    if module is None:  # check-config rejects other kinds; this is a programming error
        raise ConfigError([f"sensor.kind: {kind!r} has no driver"])
    try:
        driver = module.open_driver(config, clock)
    except ImportError as error:
        raise InstallationError(
            _(
                "sensor.kind = {kind} needs {library}, which is not installed: pip install"
                " 'gauge-agent[{extra}]' in the gauge's venv (scripts/install does this for"
                " the configured kind)"
            ).format(kind=repr(kind), library=error.name or error, extra=module.EXTRA or kind)
        ) from None
    relay = None
    if settings.power_relay_pin >= 0 and not simulate:
        from gpiozero import OutputDevice

        relay = OutputDevice(
            settings.power_relay_pin,
            active_high=settings.power_relay_active_high,
            initial_value=True,
            pin_factory=pin_factory,
        )
    return SupervisedSensor(driver, settings, power_relay=relay, clock=clock)
