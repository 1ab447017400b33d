"""Channel-layer group events: the one place their shapes are declared.

Each event names a hub handler (`room.message` -> `Hub.on_room_message`) and
carries frames already serialised, so a broadcast is encoded once, not once
per listener.
"""

from __future__ import annotations

from typing import Any

MESSAGE = "room.message"  # a new message: {seq, frame}
UPDATE = "room.update"  # edited / deleted: {frame}
PRESENCE = "room.presence"  # {frame, joined, left}: hubs keep their online view current
TYPING = "room.typing"  # {frame, origin}: origin's own socket is skipped
CLOSE = "room.close"  # {code, reason}: close every socket in the room
EJECT = "room.eject"  # {user_id, code, reason}: close one user's sockets
ROOM_CHANGED = "room.changed"  # the room's settings changed: hubs reload it

# choir.broadcast adds to every event: room_id, and `at` (time.time() when sent).

Event = dict[str, Any]


def group_name(room_id: int) -> str:
    # From the primary key only: always a valid group name, never user input.
    return f"room.{room_id}"


def message(seq: int, frame: str) -> Event:
    return {"type": MESSAGE, "seq": seq, "frame": frame}


def update(frame: str) -> Event:
    return {"type": UPDATE, "frame": frame}


def typing(frame: str, origin: str) -> Event:
    return {"type": TYPING, "frame": frame, "origin": origin}


def close(code: int, reason: str) -> Event:
    return {"type": CLOSE, "code": code, "reason": reason}


def eject(user_id: int, code: int, reason: str) -> Event:
    return {"type": EJECT, "user_id": user_id, "code": code, "reason": reason}


def room_changed() -> Event:
    return {"type": ROOM_CHANGED}


def presence(frame: str, joined: list[str], left: list[str]) -> Event:
    return {"type": PRESENCE, "frame": frame, "joined": joined, "left": left}
