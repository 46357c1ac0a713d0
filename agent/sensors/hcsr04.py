"""HC-SR04 ultrasonic ranger on GPIO, through Adafruit's `adafruit_hcsr04` library (Blinka).

The library times the echo pulse and converts it at 340 m/s; we correct the distance for the
air temperature. A burst of reads at least `read_gap_s` apart (the datasheet's 60 ms, so one
ping's echo cannot be taken for the next) gives one sample: the pipeline takes the median of
the valid ones. "Timed out" from the library (no echo, or one longer than the library waits
for) is "no reading, no_echo", never a distance.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.config import Config
from agent.errors import InstallationError
from agent.i18n import _
from agent.reasons import Reason
from agent.sensors import RawRead
from agent.sensors.temperature import TemperatureSource, compensation_factor

KIND = "hcsr04"
EXTRA = "hcsr04"


def open_driver(config: Config, clock: Callable[[], float]) -> HcSr04Sensor:
    return HcSr04Sensor(config, TemperatureSource(config.sensor.temperature))


class HcSr04Sensor:
    value_kind = "distance"
    unit = "cm"
    unit_to_m = 0.01

    def __init__(
        self,
        config: Config,
        temperature: TemperatureSource,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        settings = config.sensor.hcsr04
        try:
            import adafruit_hcsr04
        except ImportError:
            raise  # open_sensor names the extra to install
        try:
            import board
        except (ImportError, NotImplementedError, RuntimeError) as error:
            # Blinka identifies the board from /proc/cpuinfo and /proc/device-tree: not a Pi,
            # or a sandbox that hides them. Restarting will not change that.
            raise InstallationError(
                _(
                    "the HC-SR04 needs Blinka's `board` on a Raspberry Pi and could not identify"
                    " the board: {reason}"
                ).format(reason=error)
            ) from None
        try:
            trigger = getattr(board, f"D{settings.trigger_pin}")
            echo = getattr(board, f"D{settings.echo_pin}")
        except AttributeError as error:
            raise InstallationError(
                _("this board has no such pin: {reason}").format(reason=error)
            ) from None
        self.sonar = adafruit_hcsr04.HCSR04(
            trigger_pin=trigger, echo_pin=echo, timeout=settings.timeout_s
        )
        self.read_gap_s = settings.read_gap_s
        self.temperature = temperature
        self.sleep = sleep
        self.monotonic = monotonic

    def read_burst(self, count: int) -> list[RawRead]:
        factor = compensation_factor(self.temperature.read())
        reads: list[RawRead] = []
        started = None
        for _read in range(count):
            if started is not None:
                wait = self.read_gap_s - (self.monotonic() - started)
                if wait > 0:
                    self.sleep(wait)
            started = self.monotonic()
            try:
                centimetres = self.sonar.distance
            except RuntimeError:  # the library's "Timed out"
                reads.append((None, Reason.NO_ECHO))
                continue
            reads.append((round(centimetres * factor, 2), None))
        return reads

    def health(self) -> dict:
        return self.temperature.health()

    def close(self) -> None:
        self.sonar.deinit()
