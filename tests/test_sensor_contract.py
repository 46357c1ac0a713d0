"""One contract, run against every driver the registry (agent.sensors) finds.

A driver is what the daemon, the pipeline and the supervisor rely on: a value kind and a unit
they understand, up to `count` reads per burst (fewer only after a failed one), each a number
or a reason and never both, no
exception for a device that answers nothing, and a close that can be repeated. Each kind has a
rig below that runs it off the Pi through its real library (a pty ranger, a pymodbus server,
Blinka's pins simulated); a new driver without a rig fails `test_every_driver_has_a_rig`.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from agent.config import Config
from agent.sensors import drivers, sensor_kinds
from agent.units import VALUE_KINDS
from tests.conftest import FakeClock, config_from
from tests.fake_blinka import Transducer, VirtualTime, make_modules
from tests.serial_peers import ModbusPeer, Pty, PtyLink


@dataclass
class Rig:
    config: Config
    expected_m: float | None  # what a read says, in metres (None: the driver varies it)
    cut: Callable[[], None] | None  # makes the device answer nothing (None: cannot fail)


@contextmanager
def simulated_rig(monkeypatch) -> Iterator[Rig]:
    quiet = {"noise_m": 0.0, "spike_probability": 0.0, "no_echo_probability": 0.0}
    yield Rig(config_from({"sensor": {"kind": "simulated", "simulated": quiet}}), None, None)


@contextmanager
def serial_ultrasonic_rig(monkeypatch) -> Iterator[Rig]:
    pty = Pty()
    streaming = threading.Event()
    streaming.set()
    stop = threading.Event()

    def stream() -> None:  # a MaxBotix-style ranger: "R1234\r" every 20 ms
        while not stop.wait(0.02):
            if streaming.is_set():
                try:
                    pty.write(b"R1234\r")
                except OSError:
                    return

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    config = config_from(
        {"sensor": {"kind": "serial-ultrasonic", "serial": {"port": pty.path, "timeout_s": 0.2}}}
    )
    try:
        yield Rig(config, 1.234, streaming.clear)
    finally:
        stop.set()
        thread.join(timeout=2)
        pty.close()


@contextmanager
def modbus_pressure_rig(monkeypatch) -> Iterator[Rig]:
    link = PtyLink()
    peer = ModbusPeer(link.b.path, {0: 3251}, slave_id=7).start()
    modbus = {"port": link.a.path, "slave_id": 7, "timeout_s": 0.2, "scale": 0.001}
    config = config_from({"sensor": {"kind": "modbus-pressure", "modbus": modbus}})
    try:
        yield Rig(config, 3.251, peer.stop)
    finally:
        peer.stop()
        link.close()


@contextmanager
def hcsr04_rig(monkeypatch) -> Iterator[Rig]:
    transducer = Transducer(VirtualTime(), trigger_pin=5, echo_pin=6)
    for name, module in make_modules(transducer).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "pulseio", None)  # no PulseIn: the library bit-bangs
    monkeypatch.delitem(sys.modules, "adafruit_hcsr04", raising=False)
    import adafruit_hcsr04

    monkeypatch.setattr(adafruit_hcsr04, "time", transducer.clock)
    transducer.distance_m, transducer.temperature_c = 2.5, 30.0
    hcsr04 = {"trigger_pin": 5, "echo_pin": 6}
    config = config_from(
        {"sensor": {"kind": "hcsr04", "hcsr04": hcsr04, "temperature": {"fixed_c": 30.0}}}
    )

    def cut() -> None:
        transducer.echoes = False

    yield Rig(config, 2.5, cut)


RIGS = {
    "simulated": simulated_rig,
    "serial-ultrasonic": serial_ultrasonic_rig,
    "modbus-pressure": modbus_pressure_rig,
    "hcsr04": hcsr04_rig,
}


def test_every_driver_has_a_rig():
    assert sorted(RIGS) == sorted(sensor_kinds())


def test_the_registry_finds_each_driver_by_its_kind():
    assert {kind: module.KIND for kind, module in drivers().items()} == {
        kind: kind for kind in RIGS
    }
    for module in drivers().values():
        assert callable(module.open_driver)
        assert module.EXTRA is None or isinstance(module.EXTRA, str)


def check_burst(reads, count: int) -> None:
    assert isinstance(reads, list) and 1 <= len(reads) <= count
    if len(reads) < count:  # ended early: only after a read that failed (a silent bus)
        assert reads[-1][0] is None, reads
    for read in reads:
        value, reason = read
        assert (value is None) != (reason is None), read  # a number or a reason, never both
        if value is not None:
            assert isinstance(value, float) and math.isfinite(value), read
        else:
            assert isinstance(reason, str) and reason, read


@pytest.mark.parametrize("kind", sorted(RIGS))
def test_driver_contract(kind, monkeypatch):
    with RIGS[kind](monkeypatch) as rig:
        module = drivers()[kind]
        driver = module.open_driver(rig.config, FakeClock(1000.0))
        try:
            assert driver.value_kind in VALUE_KINDS
            assert isinstance(driver.unit, str) and driver.unit
            assert math.isfinite(driver.unit_to_m) and driver.unit_to_m > 0
            reads = driver.read_burst(3)
            check_burst(reads, 3)
            values = [value for value, _ in reads if value is not None]
            assert values, f"{kind}: no reading from a device that answers: {reads}"
            if rig.expected_m is not None:
                for value in values:
                    assert value * driver.unit_to_m == pytest.approx(rig.expected_m, abs=0.002)
            if rig.cut is not None:
                rig.cut()
                silent = driver.read_burst(2)  # must not raise
                check_burst(silent, 2)
                assert all(value is None for value, _ in silent), silent
        finally:
            driver.close()
        driver.close()  # a second close (a reload after a failed one) must not raise
