"""Serial ultrasonic rangers that stream ASCII frames (MaxBotix style: `R1234\r`).

The sensor free-runs; a burst flushes what is buffered (old ranges) and takes the next frames.
Anything that is not a well-formed frame (line noise, a frame cut by a reset, another device on
the line) is skipped until the next frame start, and counted. A port that cannot be opened or
vanishes (USB adapter unplugged) is "no reading, port_error" and is reopened on the next sample.
"""

from __future__ import annotations

import termios
import time
from collections.abc import Callable

from agent.config import Config
from agent.reasons import Reason
from agent.sensors import RawRead
from agent.units import UNIT_TO_M

KIND = "serial-ultrasonic"
EXTRA = "serial"  # an empty extra: pyserial is in every install


def open_driver(config: Config, clock: Callable[[], float]) -> SerialUltrasonicSensor:
    return SerialUltrasonicSensor(config)


CR = 0x0D
# What a port that vanished raises: termios.error is not an OSError (an unplugged USB adapter
# makes tcflush fail with EIO).
PORT_ERRORS = (OSError, termios.error)


class RangingFrameParser:
    """Bytes in, complete range values out. Pure and resynchronising."""

    def __init__(self, start: str = "R", digits: int = 4):
        self.start = start.encode("ascii")[0]
        self.digits = digits
        self.frame_length = 1 + digits + 1
        self.buffer = bytearray()
        self.discarded = 0  # bytes that were not part of a frame

    def reset(self) -> None:
        self.buffer.clear()

    def feed(self, data: bytes) -> list[int]:
        buffer = self.buffer
        buffer.extend(data)
        values: list[int] = []
        while True:
            start = buffer.find(self.start)
            if start < 0:
                self.discarded += len(buffer)
                buffer.clear()
                return values
            if start:
                self.discarded += start
                del buffer[:start]
            if len(buffer) < self.frame_length:
                return values  # wait for the rest of the frame
            body = buffer[1 : 1 + self.digits]
            if body.isdigit() and buffer[self.frame_length - 1] == CR:
                values.append(int(body))
                del buffer[: self.frame_length]
            else:
                self.discarded += 1
                del buffer[:1]  # not a frame: look for the next start byte


class SerialUltrasonicSensor:
    value_kind = "distance"

    def __init__(self, config: Config, monotonic: Callable[[], float] = time.monotonic):
        import serial  # pyserial, only when this kind is configured

        self.serial_module = serial
        self.settings = config.sensor.serial
        self.unit = self.settings.unit
        self.unit_to_m = UNIT_TO_M[self.unit]
        self.parser = RangingFrameParser(self.settings.frame_start, self.settings.digits)
        self.monotonic = monotonic
        self.port = None
        self.last_error: str | None = None

    def _open(self):
        if self.port is None:
            # Exclusive: a second reader on the same port would steal bytes out of frames.
            self.port = self.serial_module.Serial(
                self.settings.port, self.settings.baudrate, timeout=0.05, exclusive=True
            )
        return self.port

    def _drop_port(self, error: Exception) -> None:
        self.last_error = str(error)
        if self.port is not None:
            try:
                self.port.close()
            except (*PORT_ERRORS, self.serial_module.SerialException):
                pass
        self.port = None

    def read_burst(self, count: int) -> list[RawRead]:
        try:
            port = self._open()
            port.reset_input_buffer()  # buffered frames are old ranges
            self.parser.reset()
            discarded_before = self.parser.discarded
            values = self._collect(port, count)
        except (*PORT_ERRORS, self.serial_module.SerialException) as error:
            self._drop_port(error)
            return [(None, Reason.PORT_ERROR)]  # one is enough: the rest would fail the same
        self.last_error = None
        reads: list[RawRead] = [(float(value), None) for value in values]
        if len(reads) < count:
            garbage = self.parser.discarded > discarded_before
            reason = Reason.GARBAGE if garbage and not values else Reason.TIMEOUT
            reads += [(None, reason)] * (count - len(reads))
        return reads

    def _collect(self, port, count: int) -> list[int]:
        """Frames until `count`, waiting at most timeout_s for each."""
        values: list[int] = []
        deadline = self.monotonic() + self.settings.timeout_s
        while len(values) < count and self.monotonic() < deadline:
            found = self.parser.feed(port.read(max(1, port.in_waiting)))
            if found:
                values.extend(found)
                deadline = self.monotonic() + self.settings.timeout_s
        return values[:count]

    def health(self) -> dict:
        return {
            "port": self.settings.port,
            "discarded_bytes": self.parser.discarded,
            "port_error": self.last_error,
        }

    def close(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None
