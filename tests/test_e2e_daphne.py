"""End to end: real `manage.py serve` processes and real `websockets` clients."""

import asyncio
import json

import pytest
import websockets

from choir import services
from tests.support import ws_frames

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def hello(ws):
    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert frame["type"] == "hello"
    return frame


async def test_one_clients_messages_reach_every_client_in_order(daphne, lobby):
    server = daphne()
    clients = [await websockets.connect(server.ws("lobby")) for _ in range(5)]
    for ws in clients:
        await hello(ws)
    await clients[0].send("Hello choir, welcome!")
    for i in range(9):
        await clients[0].send(json.dumps({"type": "say", "body": f"note {i}", "client_id": f"c{i}"}))
    for ws in clients:
        frames = await ws_frames(ws, 10)
        assert [f["seq"] for f in frames] == list(range(1, 11))
        assert frames[0]["body"] == "Hello choir, welcome!"
        assert [f["body"] for f in frames[1:]] == [f"note {i}" for i in range(9)]
    for ws in clients:
        await ws.close()


async def test_clients_on_different_workers_see_the_same_order_and_presence(daphne, lobby, uses_redis):
    server = daphne(workers=2)
    clients = []
    # The kernel spreads connections over the workers; open enough to land on both.
    for i in range(12):
        ws = await websockets.connect(server.ws("lobby", f"name=c{i}"))
        await hello(ws)
        clients.append(ws)
    senders = clients[:4]
    for round_ in range(5):
        for n, ws in enumerate(senders):
            await ws.send(json.dumps({"type": "say", "body": f"{n}-{round_}", "client_id": f"{n}-{round_}"}))
    orders = []
    for ws in clients:
        frames = await ws_frames(ws, 20)
        orders.append([(f["seq"], f["body"]) for f in frames])
    assert all(order == orders[0] for order in orders)
    assert [seq for seq, _ in orders[0]] == list(range(1, 21))
    # A late joiner is told about everyone, wherever they are connected
    # (presence changes are batched for 0.2 s before they are announced).
    await asyncio.sleep(0.5)
    late = await websockets.connect(server.ws("lobby", "name=late"))
    online = (await hello(late))["online"]
    assert {f"c{i} (guest)" for i in range(12)} <= set(online)
    for ws in clients + [late]:
        await ws.close()
    assert len(server.worker_pids()) == 2


async def test_an_idle_socket_outlives_the_redis_client_timeout(daphne, lobby, uses_redis):
    """redis-py 8 defaulted to a 5 s socket timeout that killed idle readers."""
    server = daphne()
    listener = await websockets.connect(server.ws("lobby"))
    await hello(listener)
    await asyncio.sleep(7)
    sender = await websockets.connect(server.ws("lobby"))
    await hello(sender)
    await sender.send("after a long silence")
    assert (await ws_frames(listener, 1))[0]["body"] == "after a long silence"
    await listener.close()
    await sender.close()


async def test_a_message_posted_outside_the_socket_reaches_the_socket(daphne, lobby, uses_redis):
    """Admin, commands and other code post through the same service, across processes."""
    server = daphne()
    ws = await websockets.connect(server.ws("lobby"))
    await hello(ws)
    from channels.db import database_sync_to_async

    await database_sync_to_async(services.announce)(room=lobby, text="from the conductor", actor=services.SYSTEM)
    frame = (await ws_frames(ws, 1))[0]
    assert (frame["body"], frame["author"]) == ("from the conductor", "Choir")
    await ws.close()


async def test_stopping_the_server_says_closing_1001(daphne, lobby, settings):
    server = daphne()
    ws = await websockets.connect(server.ws("lobby"))
    await hello(ws)
    server.stop()
    closing = None
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "closing":
                closing = frame
    except websockets.ConnectionClosed as closed:
        # Without the fast path (choir/transport.py) autobahn allows an
        # application 1000 and 3000-4999 only; the closing frame says 1001.
        assert closed.rcvd is not None and closed.rcvd.code == (1001 if settings.CHOIR_FAST_PATH else 1000)
    assert closing is not None and closing["code"] == 1001


async def test_a_browser_origin_from_another_site_is_refused(daphne, lobby):
    server = daphne()
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(server.ws("lobby"), origin="http://evil.example")
    assert refused.value.response.status_code == 403
    ok = await websockets.connect(server.ws("lobby"), origin=f"http://127.0.0.1:{server.port}")
    await hello(ok)
    await ok.close()
