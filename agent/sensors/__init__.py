"""Sensor drivers. Each turns one sample request into a burst of raw reads.

A driver has:
- `value_kind`: "distance" (sensor face to water) or "level" (depth/pressure -> level),
- `unit`: the name of the unit of its raw values (`m`, `cm`, `mm`, `kPa`, ...), and
  `unit_to_m`: metres per raw unit; `sensor.invalid_values` are in the raw unit,
- `read_burst(count) -> list[(raw value or None, reason or None)]`: `count` raw reads for one
  sample, never raising for a failed read (a read that fails is None with a short reason),
- `close()`.
Hardware libraries are imported only by the driver of the configured kind.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

from agent.config import Config
from agent.errors import ConfigError, InstallationError

# The extra (pyproject.toml) that installs each kind's hardware library.
EXTRAS = {"hcsr04": "hcsr04", "modbus-pressure": "modbus", "serial-ultrasonic": "serial"}

RawRead = tuple["float | None", "str | None"]


class SensorDriver(Protocol):
    value_kind: str
    unit: str
    unit_to_m: float

    def read_burst(self, count: int) -> list[RawRead]: ...

    def close(self) -> None: ...


def open_sensor(config: Config, simulate: bool = False,
                clock: Callable[[], float] = time.monotonic, pin_factory=None) -> SensorDriver:
    """The configured driver, supervised. Hardware libraries are imported here, and only the
    ones the configured kind needs."""
    from agent.sensors.supervisor import SupervisedSensor

    settings = config.sensor
    kind = "simulated" if simulate else settings.kind
    try:
        driver = _driver(config, kind, clock)
    except ImportError as error:
        raise InstallationError(
            f"sensor.kind = {kind!r} needs {error.name or error}, which is not installed:"
            f" pip install 'gauge-agent[{EXTRAS.get(kind, kind)}]' in the gauge's venv"
            " (scripts/install does this for the configured kind)") from None
    relay = None
    if settings.power_relay_pin >= 0 and not simulate:
        from gpiozero import OutputDevice
        relay = OutputDevice(settings.power_relay_pin, active_high=settings.power_relay_active_high,
                             initial_value=True, pin_factory=pin_factory)
    return SupervisedSensor(driver, settings, power_relay=relay, clock=clock)


def _driver(config: Config, kind: str, clock: Callable[[], float]) -> SensorDriver:
    settings = config.sensor
    if kind == "simulated":
        from agent.sensors.simulated import SimulatedSensor
        driver: SensorDriver = SimulatedSensor(config, clock=clock)
    elif kind == "hcsr04":
        from agent.sensors.hcsr04 import HcSr04Sensor
        from agent.sensors.temperature import TemperatureSource
        driver = HcSr04Sensor(config, TemperatureSource(settings.temperature))
    elif kind == "serial-ultrasonic":
        from agent.sensors.serial_ultrasonic import SerialUltrasonicSensor
        driver = SerialUltrasonicSensor(config)
    elif kind == "modbus-pressure":
        from agent.sensors.modbus_pressure import ModbusPressureSensor
        driver = ModbusPressureSensor(config)
    else:  # check-config rejects other kinds; this is a programming error
        raise ConfigError([f"sensor.kind: {kind!r} has no driver"])
    return driver
