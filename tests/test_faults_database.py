"""The database goes away under a real server: `unavailable`, nothing half-written, retries succeed once.

The server reaches PostgreSQL through a TCP proxy the test controls
(tests/tcp_proxy.py); the test itself checks the database directly.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit, urlunsplit

import pytest
import websockets
from channels.db import database_sync_to_async

from tests.chorus import (
    Chorister,
    assert_nothing_lost_or_doubled,
    converge,
    report,
    room_total,
    start_singing,
    stored_rows,
    wait_for,
)
from tests.support import session_cookie, ws_frames
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def db_proxy(uses_postgres, server_env):
    url = urlsplit(server_env["DATABASE_URL"])
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 5432).start()
    proxy.url = urlunsplit(url._replace(netloc=f"{url.username}:{url.password or ''}@127.0.0.1:{proxy.port}"))
    yield proxy
    proxy.close()


async def cookie_for(make_user, name: str) -> list[tuple[str, str]]:
    user = await database_sync_to_async(make_user)(name)
    return [("Cookie", (await database_sync_to_async(session_cookie)(user)).decode())]


async def answer(ws, client_id: str) -> dict:
    """The frame that answers `client_id`: its `message` or an `error` with that ref."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if frame["type"] == "message" and frame["client_id"] == client_id:
            return frame
        if frame["type"] == "error" and frame["ref"] == client_id:
            return frame


async def test_with_the_database_down_say_is_unavailable_and_the_retry_succeeds_once(daphne, lobby, make_user, db_proxy):
    server = daphne(extra_env={"DATABASE_URL": db_proxy.url})
    sender = await websockets.connect(server.ws("lobby"), additional_headers=await cookie_for(make_user, "ann"))
    watcher = await websockets.connect(server.ws("lobby"), additional_headers=await cookie_for(make_user, "wes"))
    for ws in (sender, watcher):
        await ws_frames(ws, 1, kind="hello")
    for i in range(3):
        await sender.send(json.dumps({"type": "say", "body": f"before {i}", "client_id": f"before-{i}"}))
        assert (await answer(sender, f"before-{i}"))["seq"] == i + 1

    db_proxy.cut()
    for attempt in range(2):
        await sender.send(json.dumps({"type": "say", "body": "in the dark", "client_id": "dark-1"}))
        refused = await answer(sender, "dark-1")
        assert (refused["type"], refused["code"]) == ("error", "unavailable"), refused
    await sender.send(json.dumps({"type": "ping"}))
    await ws_frames(sender, 1, kind="pong")
    # Nothing half-written: the seq counter and the rows agree, gap-free.
    assert await database_sync_to_async(stored_rows)() == [(1, "before-0"), (2, "before-1"), (3, "before-2")]
    assert await room_total()() == 3

    db_proxy.restore()
    await sender.send(json.dumps({"type": "say", "body": "in the dark", "client_id": "dark-1"}))
    stored = await answer(sender, "dark-1")
    assert (stored["type"], stored["seq"], stored["body"]) == ("message", 4, "in the dark")
    await sender.send(json.dumps({"type": "say", "body": "in the dark", "client_id": "dark-1"}))
    assert (await answer(sender, "dark-1"))["seq"] == 4
    assert await database_sync_to_async(stored_rows)() == [(1, "before-0"), (2, "before-1"), (3, "before-2"), (4, "dark-1")]
    # The watcher kept its socket and saw each message once, in order.
    seen = await ws_frames(watcher, 4)
    assert [f["seq"] for f in seen] == [1, 2, 3, 4]
    for ws in (sender, watcher):
        await ws.close()


async def test_a_database_outage_under_load_loses_and_doubles_nothing(daphne, lobby, make_user, db_proxy):
    server = daphne(extra_env={"DATABASE_URL": db_proxy.url})
    choir = []
    for i in range(3):
        headers = await cookie_for(make_user, f"voice{i}")
        choir.append(
            Chorister(
                f"voice{i}",
                lambda after: server.ws("lobby", f"after={after}"),
                cookie=headers[0][1],
                to_send=40 if i < 2 else 0,  # two senders, one listener
                pace=0.05,
            )
        )
    total = await start_singing(choir, 15)
    db_proxy.cut()
    down_at = await total()
    await asyncio.sleep(2.5)
    assert await total() == down_at, "something was stored while the database was unreachable"
    db_proxy.restore()

    final = await converge(choir, total, timeout=60)
    for c in choir:
        await c.stop()
    result = report("database-outage", choir, final, refused_unavailable=sum(c.errors["unavailable"] for c in choir))
    assert result["refused_unavailable"] > 0, "the outage did not overlap the conversation"
    assert result["total"]["lost"] == 0
    assert result["total"]["doubled"] == 0
    await assert_nothing_lost_or_doubled(choir, final)


async def test_a_database_that_stops_answering_gives_unavailable_then_recovers(daphne, lobby, make_user, db_proxy):
    """A partition (no refusal, no answer) must not hang the sockets forever: the connect timeout bounds it."""
    server = daphne(
        extra_env={"DATABASE_URL": db_proxy.url, "DATABASE_CONNECT_TIMEOUT": "2", "CHOIR_HANDSHAKE_TIMEOUT": "1"}
    )
    sender = await websockets.connect(server.ws("lobby"), additional_headers=await cookie_for(make_user, "ann"))
    late_cookie = await cookie_for(make_user, "latecomer")  # a signed-in handshake reads its session
    await ws_frames(sender, 1, kind="hello")
    await sender.send(json.dumps({"type": "say", "body": "first", "client_id": "p-1"}))
    assert (await answer(sender, "p-1"))["seq"] == 1

    db_proxy.blackhole()
    # The first attempt fails on the connection the partition broke...
    await sender.send(json.dumps({"type": "say", "body": "second", "client_id": "p-2"}))
    refused = await answer(sender, "p-2")
    assert (refused["type"], refused["code"]) == ("error", "unavailable"), refused
    # ...and a new socket cannot be admitted without the database: its
    # handshake is refused by the handshake timeout instead of hanging.
    with pytest.raises((websockets.InvalidHandshake, websockets.ConnectionClosed, TimeoutError)):
        late = await websockets.connect(server.ws("lobby"), additional_headers=late_cookie, open_timeout=15)
        await ws_frames(late, 1, kind="hello", timeout=15)
    # The next attempt needs a new database connection, which never answers:
    # the connect timeout turns that into `unavailable` (the default would wait minutes).
    await sender.send(json.dumps({"type": "say", "body": "second", "client_id": "p-2"}))
    refused = await answer(sender, "p-2")
    assert (refused["type"], refused["code"]) == ("error", "unavailable"), refused

    db_proxy.restore()

    async def say_works() -> bool:
        await sender.send(json.dumps({"type": "say", "body": "second", "client_id": "p-2"}))
        return (await answer(sender, "p-2"))["type"] == "message"

    await wait_for(say_works, 20, "say works again after the partition")
    assert await database_sync_to_async(stored_rows)() == [(1, "p-1"), (2, "p-2")]
    await sender.close()
