"""The physical outputs: siren relay, three status lamps and the silence button, via gpiozero.

A thin adapter: it only writes what `Annunciator.render` decided, and only when a value changes
(so a pin history shows exactly the transitions). Which pins are real is gpiozero's business:
its pin factories pick the Pi's GPIO, or `MockFactory` in tests and `--simulate`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

from gpiozero import LED, Button, OutputDevice
from gpiozero.exc import BadPinFactory
from gpiozero.pins import Factory

from agent.annunciator import Frame
from agent.config import OutputsConfig
from agent.errors import InstallationError
from agent.i18n import _

log = logging.getLogger(__name__)
OUTPUT_NAMES = ("siren", "green", "amber", "red")  # Frame order


class GpioOutputs:
    def __init__(
        self,
        outputs: OutputsConfig,
        pin_factory: Factory | None = None,
        on_silence: Callable[[], None] | None = None,
    ):
        # gpiozero tries lgpio, RPi.GPIO, pigpio, then its native factory, warning as each
        # fails; the warnings say why, so they go into the one message a technician reads.
        with warnings.catch_warnings(record=True) as fallbacks:
            warnings.simplefilter("always")
            try:
                self.siren = OutputDevice(
                    outputs.siren_pin,
                    active_high=outputs.siren_active_high,
                    initial_value=False,
                    pin_factory=pin_factory,
                )
            except (BadPinFactory, ImportError, NotImplementedError) as error:
                reasons = "; ".join(str(w.message) for w in fallbacks) or str(error)
                raise InstallationError(
                    _(
                        "no GPIO back-end for the siren and lamps ({reasons}). On Raspberry Pi"
                        " OS: sudo apt install python3-lgpio, in a venv made with"
                        " --system-site-packages (scripts/install does both); gpiozero must be"
                        " able to read /proc/cpuinfo and /proc/device-tree"
                    ).format(reasons=reasons)
                ) from None
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

    def close(self) -> dict[str, bool | None]:
        """Siren off and lamps dark first, then release the pins (also on errors). Returns
        what each output read back just before release (None where it could not be read)."""
        states: dict[str, bool | None] = {}
        for name, device in zip(OUTPUT_NAMES, self._devices):
            try:
                device.off()
                states[name] = bool(device.value)
            except Exception:
                log.exception("could not switch %s off", device)
                states[name] = None
        for device in (*self._devices, self.button):
            device.close()
        return states
