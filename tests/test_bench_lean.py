"""The stage's lean listener (bench/lean.py) against a real Daphne: it must read what a real client reads.

The stage's latency figures are only as true as its listeners: they must
see every frame, of any length, answer pings so Daphne keeps them, and
close cleanly.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from bench.lean import open_lean
from tests.support import ws_frames

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def test_the_lean_listener_reads_every_frame_and_answers_pings(daphne, lobby):
    # Pings every second, dropped after two unanswered: a listener that did
    # not answer would be gone long before the last post below.
    server = daphne(extra_env={"CHOIR_PING_INTERVAL": "1", "CHOIR_PING_TIMEOUT": "2"})
    sock, first = await open_lean("127.0.0.1", server.port, "/ws/rooms/lobby/", source=None, timeout=10)
    assert json.loads(first)["type"] == "hello"
    heard: list[dict] = []
    sock.on_text = lambda text: heard.append(json.loads(text))
    sender = await websockets.connect(server.ws("lobby"))
    await ws_frames(sender, 1, kind="hello")
    bodies = ["short", "x" * 3000]  # a 7-bit and a 16-bit frame length
    for body in bodies:
        await sender.send(body)
    await asyncio.sleep(5)  # several pings come and go
    await sender.send("after the pings")
    deadline = time.monotonic() + 10
    while sum(f["type"] == "message" for f in heard) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert [f["body"] for f in heard if f["type"] == "message"] == [*bodies, "after the pings"]
    assert not sock.closed
    await sock.close()
    await sender.close()
