"""Modbus RTU pressure transmitter against a real pymodbus server over a pty link."""

from __future__ import annotations

import struct

import pytest

from agent.pipeline import Pipeline
from agent.sensors.modbus_pressure import ModbusPressureSensor, metres_of_water_per_unit
from tests.conftest import config_from
from tests.serial_peers import ModbusPeer, PtyLink


def words_of(fmt: str, value, low_word_first: bool = False) -> list[int]:
    raw = struct.pack(">" + fmt, value)
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return words[::-1] if low_word_first else words


REGISTERS = {0: words_of("h", -123)[0], 1: words_of("H", 54321)[0]}
for address, words in (
    (10, words_of("f", 3.2515)),
    (20, words_of("f", 3.2515, True)),
    (30, words_of("i", -70000)),
    (40, words_of("I", 3_000_000_000, True)),
):
    REGISTERS.update({address + i: word for i, word in enumerate(words)})


@pytest.fixture(scope="module")
def line():
    link = PtyLink()
    peer = ModbusPeer(link.b.path, REGISTERS, slave_id=7).start()
    yield link, peer
    peer.stop()
    link.close()


def sensor_for(link, **modbus) -> ModbusPressureSensor:
    settings = {"port": link.a.path, "slave_id": 7, "timeout_s": 0.3, **modbus}
    return ModbusPressureSensor(
        config_from({"sensor": {"kind": "modbus-pressure", "modbus": settings}})
    )


@pytest.mark.parametrize(
    "modbus, expected",
    [
        ({"register": 0, "data_type": "int16", "scale": 1.0}, -123.0),
        ({"register": 1, "data_type": "uint16", "scale": 0.001, "function": 4}, 54.321),
        ({"register": 10, "data_type": "float32", "word_order": "big", "scale": 1.0}, 3.2515),
        ({"register": 20, "data_type": "float32", "word_order": "little", "scale": 1.0}, 3.2515),
        ({"register": 30, "data_type": "int32", "scale": 1.0}, -70000.0),
        ({"register": 40, "data_type": "uint32", "word_order": "little", "scale": 1e-9}, 3.0),
    ],
)
def test_every_data_type_and_word_order(line, modbus, expected):
    sensor = sensor_for(line[0], **modbus)
    try:
        ((value, reason),) = sensor.read_burst(1)
    finally:
        sensor.close()
    assert reason is None and value == pytest.approx(expected, rel=1e-6)


def test_pressure_units_and_water_density():
    assert metres_of_water_per_unit("kPa", 1000.0) == pytest.approx(0.10197, abs=1e-5)
    assert metres_of_water_per_unit("bar", 1000.0) == pytest.approx(10.197, abs=1e-3)
    # A water-column transmitter calibrated in fresh water reads deep in denser water.
    assert metres_of_water_per_unit("m", 1005.0) == pytest.approx(1000 / 1005)


def test_a_reading_becomes_a_level_through_calibration(line):
    config = config_from(
        {
            "sensor": {
                "kind": "modbus-pressure",
                "modbus": {
                    "port": line[0].a.path,
                    "slave_id": 7,
                    "register": 10,
                    "data_type": "float32",
                    "scale": 1.0,
                    "unit": "m",
                },
            },
            "calibration": {"offset_m": 4.50},
            "filter": {"acquire_samples": 1},
        }
    )
    sensor = ModbusPressureSensor(config)
    try:
        measurement = Pipeline(config, sensor.value_kind, sensor.unit_to_m).process_burst(
            0.0, sensor.read_burst(3)
        )
    finally:
        sensor.close()
    assert measurement.level_m == pytest.approx(4.50 + 3.2515, abs=1e-6)


@pytest.mark.slow
def test_an_exception_response_is_no_reading(line):
    sensor = sensor_for(line[0], register=99)  # the transmitter has no register 99
    try:
        assert sensor.read_burst(2) == [(None, "exception_response")] * 2
    finally:
        sensor.close()


def test_a_corrupted_answer_is_a_crc_error_and_the_next_read_is_fine(line):
    link, _ = line
    sensor = sensor_for(link, register=0, scale=1.0)
    try:
        link.corrupt_next_answer = True
        assert sensor.read_burst(1) == [(None, "crc_error")]
        assert sensor.read_burst(1) == [(-123.0, None)]
    finally:
        sensor.close()


@pytest.mark.slow
def test_the_server_dying_and_coming_back(line):
    link, peer = line
    sensor = sensor_for(link, register=0, scale=1.0)
    try:
        assert sensor.read_burst(1) == [(-123.0, None)]
        peer.stop()
        # The burst stops at the first timeout: a dead transmitter costs one, not five.
        assert sensor.read_burst(5) == [(None, "timeout")]
        peer.start()
        assert sensor.read_burst(1) == [(-123.0, None)]
    finally:
        sensor.close()


def test_a_missing_port_is_port_error(tmp_path):
    sensor = ModbusPressureSensor(
        config_from({"sensor": {"modbus": {"port": str(tmp_path / "ttyUSB9")}}})
    )
    assert sensor.read_burst(1) == [(None, "port_error")]
    assert "port_error" in sensor.health()["last_error"]


def test_a_modbus_error_that_is_not_the_port_keeps_the_port_open(line):
    """Every minimalmodbus error is an OSError: the old driver called a local echo a broken
    port and reopened it at every sample."""
    import minimalmodbus

    link, _ = line
    sensor = sensor_for(link, register=0, scale=1.0)
    try:
        assert sensor.read_burst(1) == [(-123.0, None)]
        instrument = sensor.instrument

        def echo_error(*args, **kwargs):
            raise minimalmodbus.LocalEchoError("local echo mismatch")

        instrument.read_register = echo_error
        assert sensor.read_burst(1) == [(None, "invalid_response")]
        assert sensor.instrument is instrument and instrument.serial.is_open
    finally:
        sensor.close()


def test_the_rs485_adapter_is_held_exclusively_against_another_program(line):
    """(minimalmodbus shares one port among the instruments of one process, as a multi-drop
    bus needs; the lock keeps other programs off it.)"""
    import fcntl
    import os

    link, _ = line
    sensor = sensor_for(link, register=0, scale=1.0)
    other = os.open(link.a.path, os.O_RDWR | os.O_NOCTTY)  # what another program gets
    try:
        assert sensor.read_burst(1) == [(-123.0, None)]
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)
        sensor.close()
