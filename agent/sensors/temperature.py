"""Air temperature for the speed of sound, from a DS18B20 on 1-wire or a fixed value.

The HC-SR04 library assumes 340 m/s. At Samarinda's 25-35 C sound travels at 347-352 m/s, so an
uncorrected 3 m air gap reads about 8 cm short: as much as a deadband. A probe that fails falls
back to the fixed value, and says so in the health counters, rather than stopping the gauge.
"""

from __future__ import annotations

import glob
import logging
import math
from pathlib import Path

from agent.config import TemperatureConfig

log = logging.getLogger("gauge-agent")

ASSUMED_BY_LIBRARY_M_S = 340.0
W1_DEVICES = "/sys/bus/w1/devices"
POWER_ON_RESET_MILLI_C = 85000  # what a DS18B20 reports before its first conversion


def speed_of_sound_m_s(temperature_c: float) -> float:
    return 331.3 * math.sqrt(1 + temperature_c / 273.15)


def compensation_factor(temperature_c: float) -> float:
    """Multiply a distance computed at 340 m/s by this to get the distance at `temperature_c`."""
    return speed_of_sound_m_s(temperature_c) / ASSUMED_BY_LIBRARY_M_S


class TemperatureSource:
    def __init__(self, config: TemperatureConfig, w1_devices: str = W1_DEVICES):
        self.config = config
        self.w1_devices = w1_devices
        self.last_c = config.fixed_c
        self.last_source = "fixed"
        self.fallbacks = 0
        self.last_error: str | None = None

    def read(self) -> float:
        if self.config.source == "ds18b20":
            try:
                self.last_c = self._read_ds18b20()
                self.last_source = "ds18b20"
                if self.last_error is not None:
                    log.info("temperature probe back: %.1f C", self.last_c)
                self.last_error = None
                return self.last_c
            except (OSError, ValueError) as error:
                if self.last_error is None:
                    log.warning(
                        "temperature probe failed (%s); using the fixed %.1f C",
                        error,
                        self.config.fixed_c,
                    )
                self.last_error = str(error)
                self.fallbacks += 1
        self.last_c = self.config.fixed_c
        self.last_source = "fixed"
        return self.last_c

    def _device(self) -> Path:
        if self.config.device:
            return Path(self.config.device)
        found = sorted(glob.glob(f"{self.w1_devices}/28-*"))
        if not found:
            raise OSError(f"no DS18B20 under {self.w1_devices} (is dtoverlay=w1-gpio set?)")
        return Path(found[0])

    def _read_ds18b20(self) -> float:
        device = self._device()
        simple = device / "temperature"  # millidegrees, on current kernels
        if simple.exists():
            milli = int(simple.read_text().strip())
        else:
            lines = (device / "w1_slave").read_text().splitlines()
            if len(lines) < 2 or not lines[0].strip().endswith("YES") or "t=" not in lines[1]:
                raise ValueError("DS18B20 CRC check failed")
            milli = int(lines[1].rsplit("t=", 1)[1])
        if milli == POWER_ON_RESET_MILLI_C:
            raise ValueError("DS18B20 returned its power-on value 85 C")
        celsius = milli / 1000.0
        if not -40.0 <= celsius <= 85.0:
            raise ValueError(f"DS18B20 reading {celsius:.1f} C is not an air temperature")
        return celsius

    def health(self) -> dict:
        return {
            "temperature_c": self.last_c,
            "temperature_source": self.last_source,
            "temperature_fallbacks": self.fallbacks,
            "temperature_error": self.last_error,
        }
