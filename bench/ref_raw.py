"""Reference 1: the smallest broadcast server the `websockets` library allows.

A room is a set of sockets keyed by path; every text frame received is sent
as is to everyone in the room, the sender included (as Choir acknowledges).
Nothing is stored. This is the practical limit for Python on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve

rooms: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else "/"
    room = rooms.setdefault(path, set())
    room.add(ws)
    try:
        async for text in ws:
            broadcast(room, text)
    finally:
        room.discard(ws)


async def main(port: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    # Compression off and a deep backlog, like the Daphne servers it is set beside.
    async with serve(handler, "127.0.0.1", port, compression=None, backlog=2048, max_queue=None):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
