#!/usr/bin/env python3
"""A permessage-deflate peer for checking the Autobahn runner (kosoku) itself, built on the
Python `websockets` library with its default compression (`compression="deflate"`): an echo
server for kosoku's fuzzingclient mode, or an Autobahn client agent (getCaseCount, runCase
echo, updateReports) for its fuzzingserver mode.

usage: autobahn-peer-websockets.py server PORT [--final-block]
       autobahn-peer-websockets.py client ws://127.0.0.1:PORT [--final-block]

--final-block compresses every data message on its own and ends it with a final deflate block
(Z_FINISH) instead of a sync flush: legal for the receiver to accept (RFC 7692 7.2.3.4), and
the input kosoku's inflater never returns from. Needs `websockets` (scripts/autobahn-peers.sh
installs it under target/peers). Not part of the gate.

Keepalive pings are off: a ping during a 12.x/13.x case makes kosoku close it as FAILED (the
base Case.onPing calls finishWhenDone, which closes at once when the case expects no events).
"""
import asyncio
import sys
import zlib

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.extensions import permessage_deflate
from websockets.frames import CONT, CTRL_OPCODES, Frame


def end_messages_with_final_block():
    def encode(self, frame):
        if frame.opcode in CTRL_OPCODES:
            return frame
        assert frame.opcode is not CONT and frame.fin, "the echo sends whole messages"
        encoder = zlib.compressobj(wbits=-self.local_max_window_bits)
        data = encoder.compress(frame.data) + encoder.flush(zlib.Z_FINISH)
        return Frame(frame.opcode, data, frame.fin, True, frame.rsv2, frame.rsv3)

    permessage_deflate.PerMessageDeflate.encode = encode


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except Exception:
        pass


async def server(port):
    async with serve(echo, "127.0.0.1", int(port), max_size=None, compression="deflate", ping_interval=None):
        print(f"websockets echo server on {port}", flush=True)
        await asyncio.Future()


async def client(url):
    agent = "websockets"
    async with connect(f"{url}/getCaseCount") as ws:
        count = int(await ws.recv())
    print(f"{count} cases", flush=True)
    for i in range(1, count + 1):
        try:
            async with connect(
                f"{url}/runCase?case={i}&agent={agent}", max_size=None, compression="deflate", ping_interval=None
            ) as ws:
                await echo(ws)
        except Exception as e:  # a case that fails the handshake is the runner's verdict to give
            print(f"case {i}: {e!r}", flush=True)
    async with connect(f"{url}/updateReports?agent={agent}") as ws:
        await ws.wait_closed()
    print("done", flush=True)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2 or args[0] not in ("server", "client"):
        sys.exit(__doc__)
    if "--final-block" in sys.argv:
        end_messages_with_final_block()
    asyncio.run(server(args[1]) if args[0] == "server" else client(args[1]))


if __name__ == "__main__":
    main()
