"""The Pi's side of an HC-SR04, for running the real `adafruit_hcsr04` library off the Pi.

Fake `board`, `digitalio` and `microcontroller` modules stand in for Blinka, and a
`Transducer` plays the sensor and the water: a falling edge on the trigger pin makes the echo
pin go high after a short latency for exactly 2 * distance / c(T), the real physics, with c at
the true air temperature. Time is virtual: the library's `time.monotonic()` advances by a few
microseconds per call (its busy-wait loop polls it) and `time.sleep()` advances it by the
amount asked, so pulse widths are measured to within one tick, repeatably, without waiting.
"""

from __future__ import annotations

import types

from agent.sensors.temperature import speed_of_sound_m_s

ECHO_LATENCY_S = 0.00045  # the HC-SR04 raises echo about 450 us after the trigger


class VirtualTime:
    def __init__(self, tick_s: float = 2e-6):
        self.now = 1000.0
        self.tick_s = tick_s

    def monotonic(self) -> float:
        self.now += self.tick_s
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class Transducer:
    def __init__(self, clock: VirtualTime, trigger_pin: int, echo_pin: int):
        self.clock = clock
        self.trigger_pin = trigger_pin
        self.echo_pin = echo_pin
        self.distance_m = 3.0
        self.temperature_c = 30.0
        self.echoes = True  # False: nothing comes back (no target, absorbed)
        self.pulse: tuple[float, float] | None = None
        self.trigger_times: list[float] = []
        self.trigger_high = False

    def set_trigger(self, high: bool) -> None:
        if self.trigger_high and not high:  # the falling edge starts a ping
            now = self.clock.now
            self.trigger_times.append(now)
            if self.echoes:
                start = now + ECHO_LATENCY_S
                width = 2 * self.distance_m / speed_of_sound_m_s(self.temperature_c)
                self.pulse = (start, start + width)
            else:
                self.pulse = None
        self.trigger_high = high

    def echo_level(self) -> bool:
        return self.pulse is not None and self.pulse[0] <= self.clock.now < self.pulse[1]


def make_modules(transducer: Transducer) -> dict[str, types.ModuleType]:
    board = types.ModuleType("board")
    microcontroller = types.ModuleType("microcontroller")
    digitalio = types.ModuleType("digitalio")

    class Pin:
        def __init__(self, number: int):
            self.id = number

    microcontroller.Pin = Pin
    for number in range(28):
        setattr(board, f"D{number}", Pin(number))

    class Direction:
        INPUT = "input"
        OUTPUT = "output"

    class DigitalInOut:
        def __init__(self, pin):
            self.pin = pin
            self.direction = Direction.INPUT
            self.deinitialised = False

        @property
        def value(self) -> bool:
            if self.pin.id == transducer.echo_pin:
                return transducer.echo_level()
            return transducer.trigger_high

        @value.setter
        def value(self, high: bool) -> None:
            if self.pin.id != transducer.trigger_pin:
                raise RuntimeError(f"pin D{self.pin.id} is not the trigger")
            transducer.set_trigger(bool(high))

        def deinit(self) -> None:
            self.deinitialised = True

    digitalio.Direction = Direction
    digitalio.DigitalInOut = DigitalInOut
    return {"board": board, "digitalio": digitalio, "microcontroller": microcontroller}
