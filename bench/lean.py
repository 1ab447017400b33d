"""A lean listening WebSocket for the stage's load generators.

The `websockets` library costs tens of microseconds of Python per frame
received (a reader task, a frame parser, a message queue): reading one post
to 100,000 listeners then took the load generators several CPU-seconds, on
the same two cores as the server, and the stage measured them. A listener
only reads, so this one parses frames in place in `data_received` and hands
each text to a callback: no task, no queue. It speaks just enough RFC 6455
for a client that listens: the upgrade, unmasked server frames of any
length (no fragmentation: servers send these frames whole), pongs and the
closing handshake, masked as a client must.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable


class LeanSocket(asyncio.Protocol):
    """One listening socket; `on_text` is called with every text frame after the first (the hello)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.first: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        # A socket closed before its hello, after its opener gave up waiting: nobody reads the error.
        self.first.add_done_callback(lambda done: done.cancelled() or done.exception())
        self.on_text: Callable[[str], None] | None = None
        self.on_close: Callable[[], None] | None = None
        self.closed = False

    # asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            del buffer[: end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                self._fail(ConnectionError(status.decode("latin-1")[:80]))
                return
            self.upgraded = True
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            opcode, length, head = buffer[pos] & 0x0F, buffer[pos + 1] & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), 10
            if size - pos < head + length:
                break
            payload = bytes(buffer[pos + head : pos + head + length])
            pos += head + length
            if opcode == 1:
                text = payload.decode()
                if self.on_text is not None:
                    self.on_text(text)
                elif not self.first.done():
                    self.first.set_result(text)
            elif opcode == 9:
                self._send(0xA, payload)
            elif opcode == 8:
                self._send(0x8, payload[:2])
                self.transport.close()  # type: ignore[union-attr]
        del buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("closed before the first frame"))
        if self.on_close is not None:
            self.on_close()

    # Ours ---------------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        if not self.first.done():
            self.first.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)  # control frames: < 126

    async def close(self) -> None:
        self._send(0x8, (1000).to_bytes(2, "big"))
        if self.transport is not None:
            self.transport.close()


async def open_lean(
    host: str, port: int, path: str, *, source: str | None, timeout: float, headers: dict[str, str] | None = None
) -> tuple[LeanSocket, str]:
    """Connect, upgrade, and wait for the first text frame: (the socket, that frame)."""
    loop = asyncio.get_running_loop()
    kwargs = {"local_addr": (source, 0)} if source else {}
    transport, sock = await asyncio.wait_for(loop.create_connection(LeanSocket, host, port, **kwargs), timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        first = await asyncio.wait_for(asyncio.shield(sock.first), timeout)
    except BaseException:
        transport.close()
        raise
    return sock, first
