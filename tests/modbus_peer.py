"""A real Modbus RTU slave (pymodbus server) on a serial port, for the driver tests.

usage: modbus_peer.py PORT SLAVE_ID '{"address": word, ...}'
Holding and input registers hold the same words; addresses not given answer with the
exception "illegal data address". Prints "ready" when the port is open.
"""

import asyncio
import json
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
from pymodbus.server import ModbusSerialServer


async def main() -> None:
    port, slave_id, registers = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    words = {int(address): value for address, value in registers.items()}
    block = ModbusSparseDataBlock(words)
    device = ModbusDeviceContext(hr=block, ir=block)
    context = ModbusServerContext(devices={slave_id: device}, single=False)
    server = ModbusSerialServer(context, port=port, baudrate=9600)
    task = asyncio.create_task(server.serve_forever())
    while not server.is_active():
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await task


asyncio.run(main())
