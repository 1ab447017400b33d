"""Channel-layer group events: the one place their shapes are declared.

Each event names a hub handler (`room.message` -> `Hub.on_room_message`) and
carries frames already serialised, so a broadcast is encoded once, not once
per listener.
"""

from __future__ import annotations

import hashlib
from typing import Any

MESSAGES = "room.messages"  # new messages stored together: {items: [[seq, frame], …]} in seq order
UPDATE = "room.update"  # edited / deleted: {frame}
PRESENCE = "room.presence"  # {frame, joined, left}: hubs keep their online view current
TYPING = "room.typing"  # {frame, origin}: origin's own socket is skipped
CLOSE = "room.close"  # {code, reason}: close every socket in the room
EJECT = "room.eject"  # {user_id, code, reason}: close one user's sockets
ROOM_CHANGED = "room.changed"  # the room's settings changed: hubs reload it

# choir.broadcast adds to every event: room_id, and `at` (time.time() when sent).

Event = dict[str, Any]


def group_name(room_id: int) -> str:
    """The room's channel-layer group: from the primary key only, never user input.

    The hash in front spreads rooms evenly over Redis shards: channels-redis
    picks a shard from the low bits of a CRC of the name, and plain
    "room.1", "room.2", … send most neighbouring rooms to the same shard.
    """
    digest = hashlib.blake2s(str(room_id).encode(), digest_size=4).hexdigest()
    return f"room.{digest}.{room_id}"


def messages(items: list[tuple[int, str]]) -> Event:
    return {"type": MESSAGES, "items": [[seq, frame] for seq, frame in items]}


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


CHANGE = "room.change"  # a message changed: {rev, frame}; hubs deliver in rev order
READ = "room.read"  # {user_id, origin, frame}: one user's other sockets in the room


def change(rev: int, frame: str) -> Event:
    return {"type": CHANGE, "rev": rev, "frame": frame}


def read(user_id: int, origin: str | None, frame: str) -> Event:
    return {"type": READ, "user_id": user_id, "origin": origin, "frame": frame}
