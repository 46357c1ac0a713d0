"""Serial ultrasonic ranger over a real pty: frames, garbage, silence, unplugging, fuzz."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.pipeline import INVALID_VALUE, Pipeline
from agent.sensors.serial_ultrasonic import RangingFrameParser, SerialUltrasonicSensor
from tests.conftest import config_from
from tests.serial_peers import Pty


def config_for(port: str, **serial):
    return config_from(
        {
            "sensor": {
                "kind": "serial-ultrasonic",
                "burst": 5,
                "min_range_m": 0.3,
                "max_range_m": 5.0,
                "invalid_values": [9999, 5000],
                "serial": {"port": port, "timeout_s": 0.3, **serial},
            },
            "calibration": {"sensor_elevation_m": 10.40},
            "filter": {"acquire_samples": 1},
        }
    )


class FreeRunningSensor:
    """Writes `stream()` bytes to the pty every 20 ms, as a MaxBotix streams its ranges."""

    def __init__(self, pty: Pty, stream):
        self.pty, self.stream = pty, stream
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                self.pty.write(self.stream())
            except OSError:
                return
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.thread.join(timeout=2)


@pytest.fixture
def pty():
    port = Pty()
    yield port
    port.close()


def read_with(pty, stream, count=5, **serial):
    sensor = SerialUltrasonicSensor(config_for(pty.path, **serial))
    talker = FreeRunningSensor(pty, stream)
    try:
        return sensor.read_burst(count)
    finally:
        talker.stop()
        sensor.close()


def test_frames_become_distances_in_the_sensors_unit(pty):
    reads = read_with(pty, lambda: b"R2754\r")
    assert reads == [(2754.0, None)] * 5


def test_centimetre_models_with_three_digits(pty):
    assert read_with(pty, lambda: b"R275\r", count=2, unit="cm", digits=3) == [(275.0, None)] * 2


def test_garbage_and_split_frames_are_resynchronised(pty):
    chunks = iter([b"\x00\xffR27", b"54\rRR12x4\r", b"junkR2755\r\n", b"R2756\r"] * 200)
    reads = read_with(pty, lambda: next(chunks, b""), count=6)
    # Where the burst starts in the stream depends on timing; what follows does not: the three
    # good frames in their order, nothing else.
    values = [value for value, _ in reads]
    assert None not in values and set(values) <= {2754.0, 2755.0, 2756.0}
    cycle = {2754.0: 2755.0, 2755.0: 2756.0, 2756.0: 2754.0}
    assert all(cycle[a] == b for a, b in zip(values, values[1:]))


@pytest.mark.slow
def test_a_silent_sensor_times_out_and_garbage_alone_is_garbage(pty):
    assert read_with(pty, lambda: b"", count=2) == [(None, "timeout")] * 2
    assert read_with(pty, lambda: b"R12x4\rhello", count=2) == [(None, "garbage")] * 2


def test_sensor_codes_never_become_a_level(pty):
    config = config_for(pty.path)
    driver = SerialUltrasonicSensor(config)
    talker = FreeRunningSensor(pty, lambda: b"R9999\r")
    try:
        measurement = Pipeline(config, driver.value_kind, driver.unit_to_m).process_burst(
            0.0, driver.read_burst(5)
        )
    finally:
        talker.stop()
        driver.close()
    assert (measurement.level_m, measurement.reason) == (None, INVALID_VALUE)


def test_an_unplugged_adapter_is_port_error_and_is_reopened_when_it_returns(tmp_path):
    link = tmp_path / "ttyGAUGE"  # like a udev symlink /dev/serial/by-id/...
    config = config_for(str(link))
    driver = SerialUltrasonicSensor(config)
    assert driver.read_burst(2) == [(None, "port_error")]  # one says it all
    first = Pty()
    os.symlink(first.path, link)
    talker = FreeRunningSensor(first, lambda: b"R3000\r")
    try:
        assert driver.read_burst(1) == [(3000.0, None)]
        talker.stop()
        first.close()  # pulled out while open
        assert driver.read_burst(1)[0][0] is None
        second = Pty()
        link.unlink()
        os.symlink(second.path, link)
        talker = FreeRunningSensor(second, lambda: b"R3001\r")
        reads = driver.read_burst(1)
        if reads[0][1] == "port_error":  # the first read noticed the old port was gone
            reads = driver.read_burst(1)
        assert reads == [(3001.0, None)]
    finally:
        talker.stop()
        driver.close()
    assert driver.health()["port_error"] is None


FRAME = re.compile(rb"R(\d{4})\r")


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.binary(max_size=40) | st.sampled_from([b"R2754\r", b"R", b"\r", b"R12"]), max_size=20
    )
)
def test_parser_never_invents_a_range(chunks):
    parser = RangingFrameParser("R", 4)
    values = []
    for chunk in chunks:
        values.extend(parser.feed(chunk))
    # Every value is one of the well-formed frames in the stream, in order.
    stream = b"".join(chunks)
    assert values == [int(match) for match in FRAME.findall(stream)]
    assert all(0 <= value <= 9999 for value in values)
    assert len(parser.buffer) <= len(stream)


@pytest.mark.slow
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(noise=st.binary(min_size=1, max_size=200))
def test_random_bytes_on_the_wire_never_crash_the_driver_or_become_a_level(pty, noise):
    config = config_for(pty.path, timeout_s=0.1)
    driver = SerialUltrasonicSensor(config)
    talker = FreeRunningSensor(pty, lambda: noise)
    try:
        reads = driver.read_burst(3)
    finally:
        talker.stop()
        driver.close()
    framed = {float(value) for value in FRAME.findall(noise * 3)}
    for value, reason in reads:
        assert (value is None and reason in ("timeout", "garbage")) or value in framed


def test_the_port_is_opened_exclusively_so_a_second_reader_cannot_steal_bytes(pty):
    """A technician's second program on the same port took bytes out of the daemon's frames."""
    talker = FreeRunningSensor(pty, lambda: b"R3000\r")
    first = SerialUltrasonicSensor(config_for(pty.path))
    second = SerialUltrasonicSensor(config_for(pty.path))
    try:
        assert first.read_burst(1) == [(3000.0, None)]
        assert second.read_burst(1) == [(None, "port_error")]
        assert "Could not exclusively lock port" in second.health()["port_error"]
    finally:
        talker.stop()
        first.close()
        second.close()
