"""Reference 2: a bare ASGI broadcast app under Daphne, no Channels.

Per process, a room is a set of ASGI `send` callables keyed by path; a text
frame is sent to each of them. This is the ceiling of the server Choir runs on.
Run: `daphne bench.ref_asgi:application`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]

rooms: dict[str, set[Send]] = {}


async def application(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    room = rooms.setdefault(scope["path"], set())
    while True:
        event = await receive()
        kind = event["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
            room.add(send)
        elif kind == "websocket.receive":
            text = event.get("text")
            if text is not None:
                frame = {"type": "websocket.send", "text": text}
                for member in list(room):
                    await member(frame)
        elif kind == "websocket.disconnect":
            room.discard(send)
            return
