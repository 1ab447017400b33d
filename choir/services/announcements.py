"""Posts from outside a socket: admin, management commands, other Django code."""

from __future__ import annotations

from choir.access import ANNOUNCE, Singer
from choir.models import Room
from choir.protocol import Code, Refusal
from choir.services.authority import require_perm
from choir.services.messages import Posted, message_post


def announce(*, room: Room, text: str, actor: Singer) -> Posted:
    """Post to a room from outside a socket: admin, a command, other Django code.

    The actor needs choir.announce; trusted code with nobody behind it passes
    `SYSTEM`, whose announcements are signed with the system's name. Stored,
    sequenced and broadcast exactly like a message sent on a socket.
    """
    require_perm(actor, ANNOUNCE, "announce")
    if not room.is_open:
        raise Refusal(Code.FORBIDDEN, "this room is closed")
    return message_post(room=room, singer=actor, body=text, announcement=True)
