"""Helpers for the test suite: socket clients and real Daphne processes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"


def strict() -> bool:
    """Under CI a missing service or tool fails the test instead of skipping it."""
    return bool(os.environ.get("CHOIR_STRICT") or os.environ.get("CI"))


def need(condition: bool, reason: str) -> None:
    if condition:
        return
    if strict():
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


def need_service(condition: bool, reason: str) -> None:
    """Like need(), but the embedded pass of `make test` always skips: its
    second pass, on PostgreSQL and Redis, runs the test (and there, under CI,
    a missing service fails it)."""
    if not condition and os.environ.get("CHOIR_TEST_PASS") == "embedded":
        pytest.skip(reason)
    need(condition, reason)


def need_tool(name: str, *paths: str) -> str:
    found = shutil.which(name) or next((p for p in paths if os.path.exists(p)), None)
    need(found is not None, f"{name} is not installed (make test installs it as root with apt)")
    return found  # type: ignore[return-value]


# In-process sockets (WebsocketCommunicator) ---------------------------------


def session_cookie(user: Any) -> bytes:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


class Socket:
    """A WebsocketCommunicator speaking Choir's protocol."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.comm = communicator
        self.frames: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.comm.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def say(self, body: str, client_id: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "say", "body": body}
        if client_id is not None:
            frame["client_id"] = client_id
        await self.send(frame)

    async def recv(self, timeout: float = 3.0) -> dict[str, Any]:
        output = await self.comm.receive_output(timeout)
        if output["type"] == "websocket.close":
            frame = {"type": "__closed__", "code": output.get("code")}
        else:
            frame = json.loads(output["text"])
        self.frames.append(frame)
        return frame

    async def expect(self, kind: str, timeout: float = 3.0, skip: tuple[str, ...] = ("presence", "typing")) -> dict[str, Any]:
        """The next frame that is not one of `skip`; it must be of type `kind`."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] in skip and kind not in skip:
                continue
            assert frame["type"] == kind, f"expected {kind}, got {frame}"
            return frame

    async def closed(self, timeout: float = 3.0) -> int:
        """Read frames until the close; return the close code."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == "__closed__":
                return frame["code"]

    async def nothing(self, timeout: float = 0.3, skip: tuple[str, ...] = ("presence",)) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if await self.comm.receive_nothing(left):
                return
            frame = await self.recv()
            assert frame["type"] in skip, f"expected nothing, got {frame}"

    async def close(self) -> None:
        await self.comm.disconnect()


async def connect(
    slug: str = "lobby",
    *,
    user: Any = None,
    query: str = "",
    origin: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    hello: bool = True,
) -> Socket:
    """Open a socket through the real ASGI stack (origin check, auth, routing)."""
    from channels.db import database_sync_to_async

    from choirsite.asgi import application

    all_headers = list(headers or [])
    if origin is not None:
        all_headers.append((b"origin", origin.encode()))
    if user is not None:
        all_headers.append((b"cookie", await database_sync_to_async(session_cookie)(user)))
    path = f"/ws/rooms/{slug}/" + (f"?{query}" if query else "")
    comm = WebsocketCommunicator(application, path, headers=all_headers)
    connected, code = await comm.connect(timeout=5)
    assert connected, f"handshake refused ({code})"
    sock = Socket(comm)
    if hello:
        await sock.expect("hello")
    return sock


# Real Daphne processes -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env() -> dict[str, str]:
    """Environment for a server process sharing the test database and layer."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.postgresql":
        env["DATABASE_URL"] = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    if settings.REDIS_URLS:
        env["REDIS_URL"] = ",".join(settings.REDIS_URLS)
        env["CHOIR_REDIS_PREFIX"] = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    env.setdefault("DEBUG", "1")
    # Tests open sockets from one address faster than a person would.
    env.setdefault("CHOIR_HANDSHAKE_RATE", "1000")
    # Every cookie-less client of a test is one guest address: one bucket.
    env.setdefault("CHOIR_RATE_PER_SECOND", "1000")
    env.setdefault("CHOIR_RATE_BURST", "1000")
    env.setdefault("CHOIR_HANDSHAKE_BURST", "1000")
    env["CHOIR_ACCESS_LOG"] = "0"
    # Only the webhook tests want serve's delivery worker: elsewhere it would only poll.
    env.setdefault("CHOIR_WEBHOOKS_IN_SERVE", "0")
    env["DATABASE_CONN_MAX_AGE"] = "60"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Server:
    """`manage.py serve` on a free port, with N workers."""

    def __init__(self, env: dict[str, str], workers: int = 1, port: int | None = None, extra_env: dict[str, str] | None = None):
        self.env = {**env, **(extra_env or {})}
        self.workers = workers
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        OUTPUT.mkdir(exist_ok=True)
        self.log_path = OUTPUT / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, slug: str = "lobby", query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/rooms/{slug}/" + (f"?{query}" if query else "")

    def start(self, timeout: float = 20.0) -> None:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early; see {self.log_path}")
            try:
                import urllib.request

                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        # Every worker shares the socket: give late ones a moment.
                        time.sleep(0.3 * (self.workers - 1))
                        return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError(f"server did not answer within {timeout}s; see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]


async def ws_frames(ws: Any, count: int, kind: str = "message", timeout: float = 10.0) -> list[dict[str, Any]]:
    """Read frames from a `websockets` client until `count` of type `kind`."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(found)} of {count} {kind} frames: {found[-3:]}")
        frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        if frame["type"] == kind:
            found.append(frame)
    return found


def raw_handshake(port: int, path: str, rcvbuf: int | None = None) -> tuple[socket.socket, bytes]:
    """A TCP client that opens a WebSocket and reads no further on its own.

    Returns the socket and whatever arrived after the handshake response.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connecting, so the advertised window stays this small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response[:200]
    return sock, response.split(b"\r\n\r\n", 1)[1]
