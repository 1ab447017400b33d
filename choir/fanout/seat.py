"""A socket's place in a room: what the fan-out needs of it, and its delivery state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from choir.fanout.feed import Feed


class Socket(Protocol):
    """What the fan-out needs of a socket (RoomConsumer provides it)."""

    conn_id: str
    user_id: int | None
    is_staff: bool
    name: str
    client_ip: str
    base_send: Any
    wire: Any  # the socket's transport.Wire, or None on plain ASGI sends (see choir/transport.py)

    async def shut(self, code: int, reason: str) -> None: ...


class Seat:
    """One socket in one room, as `Hub.join` returns it.

    The seat owns the socket's delivery state: `cursor`, the highest seq
    written to the socket, `rev`, the highest change rev written to it, and
    `backlog`, the frames held while it replays (None once live): (seq,
    frame) for a message, (-rev, frame) for a change, (0, frame) for the rest. Its identity is copied from the socket at join, so the
    delivery loop reads slots, not the consumer's attributes.
    """

    __slots__ = ("socket", "feed", "conn_id", "user_id", "is_staff", "name", "client_ip", "wire", "base_send", "cursor", "rev", "backlog")

    def __init__(self, socket: Socket, feed: Feed) -> None:
        self.socket = socket
        self.feed = feed
        self.conn_id = socket.conn_id
        self.user_id = socket.user_id
        self.is_staff = socket.is_staff
        self.name = socket.name
        self.client_ip = socket.client_ip
        self.wire = socket.wire
        self.base_send = socket.base_send
        self.cursor = 0
        self.rev = 0
        self.backlog: list[tuple[int, str]] | None = []

    async def shut(self, code: int, reason: str) -> None:
        await self.socket.shut(code, reason)
