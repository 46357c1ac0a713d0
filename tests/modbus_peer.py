"""A real Modbus RTU slave (pymodbus server) on a serial port, for the driver tests.

usage: modbus_peer.py PORT SLAVE_ID '{"address": word, ...}'
Holding and input registers hold the same words; addresses not given answer with the
exception "illegal data address". (pymodbus 3.16 answers "device failure" to other slave
addresses where a real device would stay silent, so "no answer" is tested by killing the peer.)
Prints "ready" when the port is open.
"""

import asyncio
import json
import sys

from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice


async def main() -> None:
    port, slave_id, registers = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    blocks = [
        SimData(address=int(address), values=[word], datatype=DataType.REGISTERS)
        for address, word in sorted(registers.items(), key=lambda item: int(item[0]))
    ]
    device = SimDevice(slave_id, blocks)  # one register space for function codes 3 and 4
    server = ModbusSerialServer(device, port=port, baudrate=9600)
    task = asyncio.create_task(server.serve_forever())
    while not server.is_active():
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await task


asyncio.run(main())
