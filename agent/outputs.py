"""The physical outputs: siren relay, three status lamps and the silence button, via gpiozero.

A thin adapter: it only writes what `Annunciator.render` decided, and only when a value changes
(so a pin history shows exactly the transitions). Which pins are real is gpiozero's business:
its pin factories pick the Pi's GPIO, or `MockFactory` in tests and `--simulate`.
"""

from __future__ import annotations

import logging
from typing import Callable

from gpiozero import LED, Button, OutputDevice
from gpiozero.pins import Factory

from agent.annunciator import Frame
from agent.config import OutputsConfig

log = logging.getLogger(__name__)


class GpioOutputs:
    def __init__(self, outputs: OutputsConfig, pin_factory: Factory | None = None,
                 on_silence: Callable[[], None] | None = None):
        self.siren = OutputDevice(outputs.siren_pin, active_high=outputs.siren_active_high,
                                  initial_value=False, pin_factory=pin_factory)
        self.green = LED(outputs.green_led_pin, pin_factory=pin_factory)
        self.amber = LED(outputs.amber_led_pin, pin_factory=pin_factory)
        self.red = LED(outputs.red_led_pin, pin_factory=pin_factory)
        # Wired from the pin to ground: pressed pulls the input low (internal pull-up).
        self.button = Button(outputs.silence_button_pin, pull_up=True, pin_factory=pin_factory)
        if on_silence is not None:
            self.button.when_pressed = lambda: on_silence()
        self._devices = (self.siren, self.green, self.amber, self.red)
        self._last: tuple[bool, bool, bool, bool] = (False, False, False, False)

    def apply(self, frame: Frame) -> None:
        wanted = frame.as_tuple()
        if wanted == self._last:
            return
        for device, before, after in zip(self._devices, self._last, wanted):
            if before != after:
                device.value = after
        self._last = wanted

    def close(self) -> None:
        """Siren off and lamps dark first, then release the pins (also on errors)."""
        for device in self._devices:
            try:
                device.off()
            except Exception:  # noqa: BLE001 - releasing must go on whatever one pin says
                log.exception("could not switch %s off", device)
        for device in (*self._devices, self.button):
            device.close()
