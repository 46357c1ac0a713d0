"""Submersible pressure / level transmitter on RS-485, Modbus RTU, through minimalmodbus.

Most Indonesian water-level stations use one. The register holds pressure or water column in
some unit and data type; `scale` turns the register into that unit, and the driver knows how
many metres of *this* water one unit is (`density_kg_m3`: reservoir water with sediment is
denser than the 1000 kg/m3 a transmitter is calibrated for, and reads deep).

minimalmodbus rather than pymodbus as the client: it is small, synchronous and built straight
on pyserial, and each failure is its own exception, which maps one to one onto our reasons:
no answer -> timeout, bad checksum -> crc_error, an exception response -> exception_response,
the port gone -> port_error (reopened next sample).
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable

from agent.config import Config
from agent.reasons import Reason
from agent.sensors import RawRead
from agent.sensors.serial_ultrasonic import PORT_ERRORS

KIND = "modbus-pressure"
EXTRA = "modbus"


def open_driver(config: Config, clock: Callable[[], float]) -> ModbusPressureSensor:
    return ModbusPressureSensor(config)


G = 9.80665
PASCAL_PER_UNIT = {"kPa": 1000.0, "bar": 100000.0, "mbar": 100.0, "psi": 6894.757}
METRES_PER_UNIT = {"m": 1.0, "cm": 0.01, "mm": 0.001}
FRESH_WATER_KG_M3 = 1000.0


def metres_of_water_per_unit(unit: str, density_kg_m3: float) -> float:
    if unit in PASCAL_PER_UNIT:
        return PASCAL_PER_UNIT[unit] / (density_kg_m3 * G)
    # A transmitter that reports water column assumes fresh water.
    return METRES_PER_UNIT[unit] * FRESH_WATER_KG_M3 / density_kg_m3


class ModbusPressureSensor:
    value_kind = "level"

    def __init__(self, config: Config):
        import minimalmodbus
        import serial

        self.minimalmodbus = minimalmodbus
        self.serial_module = serial
        self.settings = config.sensor.modbus
        self.unit = self.settings.unit
        self.unit_to_m = metres_of_water_per_unit(self.unit, self.settings.density_kg_m3)
        self.byteorder = (
            minimalmodbus.BYTEORDER_BIG
            if self.settings.word_order == "big"
            else minimalmodbus.BYTEORDER_LITTLE_SWAP
        )  # low word first (CDAB)
        self.instrument = None
        self.last_error: str | None = None

    def _open(self):
        if self.instrument is None:
            settings = self.settings
            instrument = self.minimalmodbus.Instrument(
                settings.port, settings.slave_id, mode=self.minimalmodbus.MODE_RTU
            )
            instrument.serial.baudrate = settings.baudrate
            instrument.serial.parity = settings.parity
            instrument.serial.stopbits = settings.stopbits
            instrument.serial.bytesize = 8
            instrument.serial.timeout = settings.timeout_s
            instrument.clear_buffers_before_each_transaction = True
            try:
                # Exclusive, as the serial ranger's port: two programs on one RS-485 adapter
                # would each read half of the other's answers.
                fcntl.flock(instrument.serial.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                instrument.serial.close()
                raise self.serial_module.SerialException(
                    f"{settings.port} is in use by another program"
                ) from None
            self.instrument = instrument
        return self.instrument

    def _drop_port(self) -> None:
        if self.instrument is not None:
            try:
                self.instrument.serial.close()
            except (*PORT_ERRORS, self.serial_module.SerialException):
                pass
        self.instrument = None

    def read_once(self) -> RawRead:
        mm, settings = self.minimalmodbus, self.settings
        try:
            instrument = self._open()
            kind, function = settings.data_type, settings.function
            if kind in ("int16", "uint16"):
                register = instrument.read_register(
                    settings.register, 0, functioncode=function, signed=kind == "int16"
                )
            elif kind in ("int32", "uint32"):
                register = instrument.read_long(
                    settings.register,
                    functioncode=function,
                    signed=kind == "int32",
                    byteorder=self.byteorder,
                )
            else:
                register = instrument.read_float(
                    settings.register, functioncode=function, byteorder=self.byteorder
                )
        except mm.NoResponseError as error:
            return self._failed(Reason.TIMEOUT, error)
        except mm.InvalidResponseError as error:
            checksum = "checksum" in str(error).lower()
            reason = Reason.CRC_ERROR if checksum else Reason.INVALID_RESPONSE
            return self._failed(reason, error)
        except mm.SlaveReportedException as error:
            return self._failed(Reason.EXCEPTION_RESPONSE, error)
        except mm.ModbusException as error:
            # Every minimalmodbus error is an OSError too: without this line a local echo or
            # any other protocol error was taken for a broken port, and the port dropped.
            return self._failed(Reason.INVALID_RESPONSE, error)
        except (*PORT_ERRORS, self.serial_module.SerialException) as error:
            self._drop_port()
            return self._failed(Reason.PORT_ERROR, error)
        self.last_error = None
        return register * settings.scale, None

    def _failed(self, reason: str, error: Exception) -> RawRead:
        self.last_error = f"{reason}: {error}"
        return None, reason

    def read_burst(self, count: int) -> list[RawRead]:
        """Up to `count` reads; stops at the first timeout or port error: a transmitter that is
        not answering cost a whole burst of timeouts per sample (2.5 s with the defaults)."""
        reads = []
        for _ in range(count):
            reads.append(self.read_once())
            if reads[-1][1] in (Reason.TIMEOUT, Reason.PORT_ERROR):
                break
        return reads

    def health(self) -> dict:
        return {
            "port": self.settings.port,
            "slave_id": self.settings.slave_id,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        self._drop_port()
