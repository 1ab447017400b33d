"""A TCP forwarder a test can cut and restore, to stand between a server and PostgreSQL.

Threads, not asyncio: it keeps forwarding whatever the test's event loop is
doing. `cut()` closes every forwarded connection and stops listening, so new
connections are refused as if the database were down; `restore()` listens on
the same port again. `blackhole()` accepts connections and never answers, as
a network partition would.
"""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self.mode = "down"
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self.accepted = 0

    # Control ------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self.mode = "up"
        self._listen()
        return self

    def cut(self) -> None:
        """Refuse new connections and reset the open ones: the database is down."""
        with self._lock:
            self.mode = "down"
            listener, self._listener = self._listener, None
            pairs, self._pairs = self._pairs, []
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            listener.close()
        for a, b in pairs:
            for sock in (a, b):
                if sock is not None:
                    _reset(sock)

    def restore(self) -> None:
        self.cut()
        self.mode = "up"
        self._listen()

    def blackhole(self) -> None:
        """Accept connections but never forward a byte: a partition, not a refusal."""
        self.cut()
        self.mode = "blackhole"
        self._listen()

    def close(self) -> None:
        self.cut()

    # Forwarding ----------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.mode == "blackhole":
                with self._lock:
                    self._pairs.append((client, None))
                continue
            if self.mode != "up":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _reset(client)
                    _reset(upstream)
                    return
                self._pairs.append((client, upstream))
            threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _reset(sock: socket.socket) -> None:
    """Drop a connection, waking any pump thread blocked on it.

    close() alone would not: on Linux a socket another thread is blocked in
    recv() stays open, silently, until that recv returns.
    """
    for step in (lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
        try:
            step()
        except OSError:
            pass
