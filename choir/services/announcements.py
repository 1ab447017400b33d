"""Posts from outside a socket: admin, management commands, other Django code."""

from __future__ import annotations

from choir.access import Singer
from choir.models import Room
from choir.protocol import Code, Refusal
from choir.services.messages import SYSTEM_NAME, Posted, message_post


def announce(*, room: Room, text: str, actor: Singer | None = None) -> Posted:
    """Post to a room from outside a socket: admin, a command, other Django code.

    Stored, sequenced and broadcast exactly like a message sent on a socket.
    """
    if actor is None or actor.user is None:
        actor = Singer(user=None, name=SYSTEM_NAME, guest_key="system")
    if not room.is_open:
        raise Refusal(Code.FORBIDDEN, "this room is closed")
    return message_post(room=room, singer=actor, body=text, announcement=True)

