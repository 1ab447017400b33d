"""Writing one frame to many sockets, framed once.

Under Daphne each socket is an autobahn protocol object. ASGI's `send` would
encode the text and build the WebSocket frame again for every listener;
autobahn's prepared messages build it once and each socket just writes the
bytes. Sockets without a protocol object (tests' in-process communicator)
get the ordinary ASGI send.

Twisted's `transport.write` never writes at once: it queues the bytes and
registers the socket for writability, so each frame costs two epoll_ctl
calls and a reactor callback, and autobahn's `sendData` formats a debug line
per call. Fanned out to thousands of sockets that is most of the server's
time. When nothing is queued on a plain TCP connection the bytes go straight
to the socket, as asyncio's own transports do; whatever the kernel does not
take goes to Twisted's queue, so order is kept and back-pressure is Twisted's.
"""

from __future__ import annotations

from typing import Any

from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from twisted.internet import tcp

from choir import metrics

OPEN = WebSocketProtocol.STATE_OPEN


class Outgoing:
    """A server frame on its way to many sockets."""

    __slots__ = ("text", "_message", "_prepared")

    def __init__(self, text: str) -> None:
        self.text = text
        self._message: dict[str, Any] | None = None
        self._prepared: PreparedMessage | None = None

    @property
    def message(self) -> dict[str, Any]:
        if self._message is None:
            self._message = {"type": "websocket.send", "text": self.text}
        return self._message

    @property
    def frame_bytes(self) -> bytes:
        """The whole WebSocket frame, header included, as it goes on the wire."""
        if self._prepared is None:
            # Server frames are never masked and Daphne negotiates no compression.
            self._prepared = PreparedMessage(self.text.encode("utf-8"), False, False, False)
        return self._prepared.payloadHybi

    def write(self, wire: Any) -> None:
        """Write on an autobahn protocol, if it is still open."""
        Outgoing.write_bytes(wire, self.frame_bytes)

    @staticmethod
    def joined(outgoing: list[Outgoing]) -> bytes:
        """Several frames back to back: one write, one syscall, for a whole batch."""
        return outgoing[0].frame_bytes if len(outgoing) == 1 else b"".join(o.frame_bytes for o in outgoing)

    @staticmethod
    def write_bytes(wire: Any, data: bytes) -> None:
        if wire.state != OPEN:
            return
        if wire.send_queue:  # autobahn's own queue (closing handshakes, chopped writes) goes first
            wire.sendData(data)
            return
        write_through(wire.transport, data)


def write_through(transport: Any, data: bytes) -> None:
    """Write `data` on a Twisted TCP transport, at once if nothing is queued before it."""
    if (
        type(transport) is tcp.Server
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport.dataBuffer
        and not transport._tempDataLen
    ):
        try:
            sent = transport.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # A dead peer: Twisted's own write finds out and closes it properly.
            sent = 0
        if sent == len(data):
            return
        metrics.WRITES_QUEUED.inc()
        data = data[sent:]
    transport.write(data)
