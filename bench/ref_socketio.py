"""Peer: a python-socketio 5 room relay, served by uvicorn as an ASGI app.

A client names its room in the handshake query
(`/socket.io/?EIO=4&transport=websocket&room=SLUG`); a `say` event is emitted
to the whole room, the sender included, as Node's `io.to(room).emit` does.
WebSocket transport only. Nothing is stored.
Run: `uvicorn bench.ref_socketio:app`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import socketio

sio = socketio.AsyncServer(async_mode="asgi", transports=["websocket"], cors_allowed_origins="*")
app = socketio.ASGIApp(sio)
room_of: dict[str, str] = {}


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    room = parse_qs(environ.get("QUERY_STRING", "")).get("room", ["lobby"])[0]
    room_of[sid] = room
    await sio.enter_room(sid, room)


@sio.event
async def say(sid: str, body: Any) -> None:
    await sio.emit("message", body, to=room_of.get(sid, "lobby"))


@sio.event
async def disconnect(sid: str, *args: Any) -> None:
    room_of.pop(sid, None)
