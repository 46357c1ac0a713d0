"""Sensors for tests and benches that drive a whole Daemon (no hardware, no simulation)."""

from __future__ import annotations


class LiveSensor:
    """A distance the test sets; read every sample, at once."""

    value_kind, unit, unit_to_m = "distance", "m", 1.0

    def __init__(self, distance_m: float):
        self.distance_m = distance_m

    def read_burst(self, count):
        return [(self.distance_m, None)] * count

    def close(self):
        pass
