"""Real serial byte streams for the sensor tests, on pseudo-terminals.

- `Pty`: one pty pair; the test writes what a sensor would send to `master`, the driver opens
  `path` with pyserial exactly as it would open /dev/ttyUSB0.
- `PtyLink`: two pty pairs joined by a thread that copies bytes both ways, like a null-modem
  cable (what `socat pty pty` does), with fault injection on the wire: corrupt one byte of the
  next answer. A real Modbus server opens one end, the driver the other.
- `ModbusPeer`: a real pymodbus RTU server in a child process on one end of a link, so it can be
  killed and started again.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

PEER_SCRIPT = Path(__file__).with_name("modbus_peer.py")


class Pty:
    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class PtyLink:
    def __init__(self):
        self.a, self.b = Pty(), Pty()
        self.corrupt_next_answer = False  # flip a bit in the next bytes from b to a
        self.bytes_a_to_b = 0
        self._running = True
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while self._running:
            try:
                ready, _, _ = select.select([self.a.master, self.b.master], [], [], 0.05)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # the other side's slave is not open right now
                    time.sleep(0.01)
                    continue
                if fd == self.a.master:
                    self.bytes_a_to_b += len(data)
                    os.write(self.b.master, data)
                else:
                    if self.corrupt_next_answer and data:
                        data = bytes([data[0] ^ 0x01]) + data[1:]  # wrong slave byte: bad CRC
                        self.corrupt_next_answer = False
                    os.write(self.a.master, data)

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2)
        self.a.close()
        self.b.close()


class ModbusPeer:
    """A pymodbus RTU server holding `registers` ({address: 16-bit word}) for `slave_id`."""

    def __init__(self, port: str, registers: dict[int, int], slave_id: int = 1):
        self.port = port
        self.registers = registers
        self.slave_id = slave_id
        self.process: subprocess.Popen | None = None

    def start(self) -> ModbusPeer:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(PEER_SCRIPT),
                self.port,
                str(self.slave_id),
                json.dumps({str(k): v for k, v in self.registers.items()}),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()  # the peer says when its port is open
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"modbus peer did not start: {line!r}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process is not None:
            for stream in (self.process.stdout, self.process.stderr):
                stream.close()
        self.process = None
