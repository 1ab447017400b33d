"""Channel-layer group events: the one place their shapes are declared.

Each event's `type` names what the fan-out does with it (choir/fanout/hub.py
dispatches on it), and carries frames already serialised, so a broadcast is
encoded once, not once per socket. `choir.broadcast` adds `room_id` and `at`
(time.time() when sent) to every event on its way out.
"""

from __future__ import annotations

import hashlib
from typing import Literal, NotRequired, TypedDict

MESSAGES: Literal["room.messages"] = "room.messages"
UPDATE: Literal["room.update"] = "room.update"
PRESENCE: Literal["room.presence"] = "room.presence"
TYPING: Literal["room.typing"] = "room.typing"
CLOSE: Literal["room.close"] = "room.close"
EJECT: Literal["room.eject"] = "room.eject"
ROOM_CHANGED: Literal["room.changed"] = "room.changed"
TOKEN_REVOKED: Literal["token.revoked"] = "token.revoked"

# Events about no one room go to this group, which every hub joins.
EVERYWHERE = "choir.everywhere"
CHANGE: Literal["room.change"] = "room.change"
READ: Literal["room.read"] = "room.read"


class Stamped(TypedDict):
    """What choir.broadcast adds to every event."""

    room_id: NotRequired[int]
    at: NotRequired[float]


class Messages(Stamped):
    """New messages stored together, in seq order: [[seq, frame], …]."""

    type: Literal["room.messages"]
    items: list[list[int | str]]


class Update(Stamped):
    """A frame for every socket outside any order (v1 edits and deletes went this way)."""

    type: Literal["room.update"]
    frame: str


class Change(Stamped):
    """A message changed (edit, delete, redaction, reaction): hubs deliver these in `rev` order."""

    type: Literal["room.change"]
    rev: int
    frame: str


class Read(Stamped):
    """A read marker moved: only that user's other sockets hear it (not `origin`, the socket that read)."""

    type: Literal["room.read"]
    user_id: int
    origin: str | None
    frame: str


class Presence(Stamped):
    """Arrivals and departures: hubs keep their online view current with them."""

    type: Literal["room.presence"]
    frame: str
    joined: list[str]
    left: list[str]
    online: int
    crowd: bool  # the room was past CHOIR_PRESENCE_CROWD when the batch was made


class Typing(Stamped):
    """Someone is typing; `origin` (their socket's conn_id) is skipped."""

    type: Literal["room.typing"]
    frame: str
    origin: str


class Close(Stamped):
    """Close every socket in the room."""

    type: Literal["room.close"]
    code: int
    reason: str


class Eject(Stamped):
    """Close one user's sockets."""

    type: Literal["room.eject"]
    user_id: int
    code: int
    reason: str


class TokenRevoked(Stamped):
    """An API token was revoked (or expired): close the sockets opened with it, in every room."""

    type: Literal["token.revoked"]
    token_id: int
    code: int
    reason: str


class RoomChanged(Stamped):
    """The room's settings changed: hubs reload it."""

    type: Literal["room.changed"]


Event = Messages | Update | Change | Read | Presence | Typing | Close | Eject | RoomChanged | TokenRevoked


def group_name(room_id: int) -> str:
    """The room's channel-layer group: from the primary key only, never user input.

    The hash in front spreads rooms evenly over Redis shards: channels-redis
    picks a shard from the low bits of a CRC of the name, and plain
    "room.1", "room.2", … send most neighbouring rooms to the same shard.
    """
    digest = hashlib.blake2s(str(room_id).encode(), digest_size=4).hexdigest()
    return f"room.{digest}.{room_id}"


def messages(items: list[tuple[int, str]]) -> Messages:
    return {"type": MESSAGES, "items": [[seq, frame] for seq, frame in items]}


def update(frame: str) -> Update:
    return {"type": UPDATE, "frame": frame}


def typing(frame: str, origin: str) -> Typing:
    return {"type": TYPING, "frame": frame, "origin": origin}


def close(code: int, reason: str) -> Close:
    return {"type": CLOSE, "code": code, "reason": reason}


def eject(user_id: int, code: int, reason: str) -> Eject:
    return {"type": EJECT, "user_id": user_id, "code": code, "reason": reason}


def room_changed() -> RoomChanged:
    return {"type": ROOM_CHANGED}


def presence(frame: str, joined: list[str], left: list[str], online: int, crowd: bool) -> Presence:
    return {"type": PRESENCE, "frame": frame, "joined": joined, "left": left, "online": online, "crowd": crowd}


def token_revoked(token_id: int, code: int, reason: str) -> TokenRevoked:
    return {"type": TOKEN_REVOKED, "token_id": token_id, "code": code, "reason": reason}


def change(rev: int, frame: str) -> Change:
    return {"type": CHANGE, "rev": rev, "frame": frame}


def read(user_id: int, origin: str | None, frame: str) -> Read:
    return {"type": READ, "user_id": user_id, "origin": origin, "frame": frame}
