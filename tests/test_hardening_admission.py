"""Limits that hold across reconnects, parallel sockets and server processes,
and handshakes that cost something even when refused (issue 12, items 2 and 6)."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from channels.db import database_sync_to_async

from choir.fanout import rooms as fanout_rooms
from choir.models import Message
from tests.support import connect, ws_frames

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tight(settings):
    settings.CHOIR_RATE_PER_SECOND = 0.01  # no refill during a test: counts are exact
    settings.CHOIR_RATE_BURST = 5
    settings.CHOIR_FLOOD_STRIKES = 3
    return settings


async def test_a_guest_closed_for_flooding_reconnects_to_an_empty_bucket(lobby, tight):
    flooder = await connect("lobby")
    for i in range(10):
        await flooder.say(f"spam {i}", client_id=f"s{i}")
    assert await flooder.closed() == 4429
    again = await connect("lobby")
    await again.say("fresh start?", client_id="again")
    # The flooder's accepted posts may still be arriving: skip them.
    error = await again.expect("error", skip=("presence", "message"))
    assert (error["code"], error["ref"]) == ("rate_limited", "again")


async def test_parallel_guest_sockets_from_one_address_share_one_bucket(lobby, tight):
    tight.CHOIR_FLOOD_STRIKES = 100
    sockets = [await connect("lobby") for _ in range(5)]
    for n, sock in enumerate(sockets):
        for i in range(2):
            await sock.say(f"{n}-{i}", client_id=f"{n}-{i}")
    limited = 0
    for sock in sockets:
        while not await sock.comm.receive_nothing(0.5):
            frame = await sock.recv()
            limited += frame["type"] == "error" and frame["code"] == "rate_limited"
    assert limited == 5  # ten frames, one bucket of five
    assert await database_sync_to_async(Message.objects.filter(room=lobby).count)() == 5


async def test_handshakes_to_unknown_rooms_are_remembered_not_read_again(lobby, settings, monkeypatch):
    reads = []
    original = fanout_rooms.room_by_slug

    def counting(slug):
        reads.append(slug)
        return original(slug)

    monkeypatch.setattr(fanout_rooms, "room_by_slug", counting)
    for _ in range(3):
        sock = await connect("no-such-room", hello=False)
        assert await sock.closed() == 4404
        await asyncio.sleep(0.6)  # past the window in which one read serves a crowd
    assert reads == ["no-such-room"]


async def test_every_handshake_costs_a_token_refused_ones_too(lobby, settings):
    settings.CHOIR_HANDSHAKE_RATE = 0.01
    settings.CHOIR_HANDSHAKE_BURST = 3
    for _ in range(3):
        sock = await connect("no-such-room", hello=False)
        assert await sock.closed() == 4404
    late = await connect("lobby", hello=False)
    closing = await late.expect("closing")
    assert closing["code"] == 1013 and "too many connection attempts" in closing["reason"]
    assert await late.closed() == 1013


@pytest.mark.e2e
async def test_a_guests_bucket_follows_them_to_another_server_process(daphne, lobby, uses_redis):
    limits = {"CHOIR_RATE_PER_SECOND": "0.01", "CHOIR_RATE_BURST": "3", "CHOIR_FLOOD_STRIKES": "100"}
    first, second = daphne(extra_env=limits), daphne(extra_env=limits)
    async with websockets.connect(first.ws("lobby")) as ws:
        await ws_frames(ws, 1, kind="hello")
        for i in range(3):
            await ws.send(json.dumps({"type": "say", "body": f"note {i}", "client_id": f"a{i}"}))
        await ws_frames(ws, 3)
    async with websockets.connect(second.ws("lobby")) as ws:
        await ws_frames(ws, 1, kind="hello")
        await ws.send(json.dumps({"type": "say", "body": "elsewhere", "client_id": "b0"}))
        error = (await ws_frames(ws, 1, kind="error"))[0]
        assert (error["code"], error["ref"]) == ("rate_limited", "b0")
