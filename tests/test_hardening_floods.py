"""A flooding client is rate limited and then closed, and nobody else loses a message.

Correctness only: how much a flood delays others' delivery is measured by the
benchmark (`make bench`), not asserted here against a clock.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from channels.db import database_sync_to_async

from choir.models import Message
from tests.support import connect, session_cookie, ws_frames

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_flooder_is_limited_then_closed_while_a_listener_hears_every_normal_message(lobby, settings, make_user):
    settings.CHOIR_RATE_PER_SECOND = 0.01  # no refill during the test: the counts are exact
    settings.CHOIR_RATE_BURST = 5
    settings.CHOIR_FLOOD_STRIKES = 10
    singer = await database_sync_to_async(make_user)("singer")
    listener = await connect("lobby")
    normal = await connect("lobby", user=singer)
    flooder = await connect("lobby")
    for i in range(200):
        await flooder.send({"type": "say", "body": f"spam {i}", "client_id": f"spam-{i}"})
    for i in range(5):
        await normal.say(f"verse {i}", client_id=f"verse-{i}")

    limited = 0
    while True:
        frame = await flooder.recv()
        if frame["type"] == "error":
            assert frame["code"] == "rate_limited" and frame["retry_after"] > 0
            limited += 1
        elif frame["type"] == "__closed__":
            break
    assert (limited, frame["code"]) == (9, 4429)
    # The singer's own messages come back as acknowledgements once stored.
    acked = []
    while len(acked) < 5:
        frame = await normal.expect("message")
        if frame["body"].startswith("verse"):
            acked.append(frame["body"])

    stored = await database_sync_to_async(lambda: list(Message.objects.order_by("seq").values_list("seq", "body")))()
    assert len([body for _, body in stored if body.startswith("spam")]) == 5  # the burst, then nothing
    assert len(stored) == 10
    assert [body for _, body in stored if body.startswith("verse")] == [f"verse {i}" for i in range(5)]
    heard = [await listener.expect("message") for _ in range(10)]
    assert [(f["seq"], f["body"]) for f in heard] == stored
    await listener.nothing(0.2)
    for sock in (listener, normal):
        await sock.close()


@pytest.mark.e2e
@pytest.mark.slow
async def test_a_flood_through_daphne_is_closed_and_the_room_keeps_every_message(daphne, lobby, make_user):
    """The shipped limits (5 a second, burst 20, 20 strikes); the flooder does not wait for answers."""
    server = daphne(extra_env={"CHOIR_RATE_PER_SECOND": "5", "CHOIR_RATE_BURST": "20", "CHOIR_FLOOD_STRIKES": "20"})
    singer = await database_sync_to_async(make_user)("singer")
    cookie = (await database_sync_to_async(session_cookie)(singer)).decode()
    # Unbounded client queues: `normal` never reads, and a full queue would stall its close.
    listener = await websockets.connect(server.ws("lobby"), max_queue=None)
    normal = await websockets.connect(server.ws("lobby"), additional_headers=[("Cookie", cookie)], max_queue=None)
    flooder = await websockets.connect(server.ws("lobby"))
    for ws in (listener, normal, flooder):
        await ws_frames(ws, 1, kind="hello")

    async def flood() -> int | None:
        try:
            for i in range(2000):
                await flooder.send(json.dumps({"type": "say", "body": f"spam {i}", "client_id": f"spam-{i}"}))
            async for _ in flooder:
                pass
        except websockets.ConnectionClosed:
            pass
        return flooder.close_code

    async def sing() -> None:
        for i in range(15):
            await normal.send(json.dumps({"type": "say", "body": f"verse {i}", "client_id": f"verse-{i}"}))
            await asyncio.sleep(0.25)  # within 5 a second

    flooded, _ = await asyncio.gather(flood(), sing())
    assert flooded == 4429
    stored = await database_sync_to_async(lambda: list(Message.objects.order_by("seq").values_list("seq", "body")))()
    assert [body for _, body in stored if body.startswith("verse")] == [f"verse {i}" for i in range(15)]
    heard = await ws_frames(listener, len(stored), timeout=20)
    assert [(f["seq"], f["body"]) for f in heard] == stored
    for ws in (listener, normal):
        await ws.close()
