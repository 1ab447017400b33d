"""Conversations across two real Daphne processes sharing Redis and the database."""

import asyncio
import json

import pytest
import websockets
from channels.db import database_sync_to_async
from django.test import Client

from choir import services
from choir.access import Singer
from choir.models import Membership, Message
from tests.support import session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


async def open_socket(server, user=None, query: str = ""):
    headers = {"Cookie": (await db(session_cookie)(user)).decode()} if user is not None else None
    ws = await websockets.connect(server.ws("lobby", query), additional_headers=headers)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert hello["type"] == "hello"
    return ws, hello


async def frames_until(ws, done, timeout: float = 15.0) -> list[dict]:
    """Frames (less presence and typing) until `done(frame)` is true for one."""
    found = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(deadline - loop.time(), 0.01)))
        if frame["type"] in ("presence", "typing"):
            continue
        found.append(frame)
        if done(frame):
            return found


async def test_a_client_away_during_changes_on_two_processes_resumes_with_each_once_in_rev_order(
    daphne, lobby, make_user, uses_redis
):
    ann, bob, mod = [await db(make_user)(name) for name in ("ann", "bob", "mod")]
    await db(Membership.objects.create)(room=lobby, user=mod, role=Membership.Role.CONDUCTOR)
    one, two = daphne(), daphne()
    ann_ws, _ = await open_socket(one, ann)
    for i in range(5):
        await ann_ws.send(json.dumps({"type": "say", "body": f"m{i + 1}", "client_id": f"c{i}"}))
    await frames_until(ann_ws, lambda f: f.get("seq") == 5 and f["type"] == "message")

    away, hello = await open_socket(two, bob)
    seq, rev = hello["seq"], hello["rev"]
    assert (seq, rev) == (5, 0)
    await away.close()
    watcher, _ = await open_socket(one)  # live through it all, on the other process

    bob_ws, _ = await open_socket(two, bob)
    redact = db(services.message_redact)
    changes = [
        ann_ws.send(json.dumps({"type": "edit", "seq": 1, "body": "m1, edited"})),  # on process one
        bob_ws.send(json.dumps({"type": "react", "seq": 2, "emoji": "👍", "on": True})),  # on process two
        ann_ws.send(json.dumps({"type": "delete", "seq": 3})),
        redact(room=lobby, actor=Singer(user=mod, name="mod"), seq=4),  # from here, by way of Redis
        bob_ws.send(json.dumps({"type": "react", "seq": 1, "emoji": "🎵", "on": True})),
    ]
    live = []
    for taken, change in enumerate(changes, start=1):
        # One at a time, so the revs they take are known.
        await change
        live += await frames_until(watcher, lambda f, taken=taken: f.get("rev") == taken)
    assert [f["rev"] for f in live] == [1, 2, 3, 4, 5]  # each once, in rev order
    await bob_ws.send(json.dumps({"type": "react", "seq": 5, "emoji": "🎵", "on": False}))  # nothing there: no rev
    answer = await frames_until(bob_ws, lambda f: f["type"] == "reactions" and f["actor"] is None)
    assert (answer[-1]["seq"], answer[-1]["counts"]) == (5, {})

    back, hello = await open_socket(two, bob, f"after={seq}&rev={rev}")
    assert hello["rev"] == 5
    replay = await frames_until(back, lambda f: f["type"] == "synced")
    assert [(f["type"], f.get("seq"), f.get("rev")) for f in replay] == [
        ("reactions", 2, 2),
        ("deleted", 3, 3),
        ("edited", 4, 4),
        ("edited", 1, 5),
        ("synced", 5, 5),
    ]
    assert replay[3]["body"] == "m1, edited" and replay[3]["reactions"] == {"🎵": 1}
    assert replay[2]["body"] == services.REDACTED
    with pytest.raises(asyncio.TimeoutError):
        await frames_until(back, lambda f: True, timeout=1.0)
    for ws in (ann_ws, watcher, bob_ws, back):
        await ws.close()


async def test_concurrent_reactions_on_two_processes_give_exact_counts(daphne, lobby, make_user, uses_redis):
    await db(services.message_post)(room=lobby, singer=Singer(user=None, name="g", guest_key="g"), body="vote")
    one, two = daphne(), daphne()
    users = [await db(make_user)(f"voter{i}") for i in range(10)]
    sockets = [(await open_socket((one, two)[i % 2], user))[0] for i, user in enumerate(users)]
    watchers = [(await open_socket(server))[0] for server in (one, two)]
    await asyncio.gather(*(
        ws.send(json.dumps({"type": "react", "seq": 1, "emoji": emoji, "on": on}))
        for ws in sockets
        for emoji, on in (("👍", True), ("👍", True), ("🎉", True), ("🎉", False), ("❤", True))
    ))
    target = len(users) * 4  # 👍 on, 🎉 on, 🎉 off, ❤ on; repeats take no rev
    for watcher in watchers:
        frames = await frames_until(watcher, lambda f: f.get("rev") == target)
        revs = [f["rev"] for f in frames if f["type"] == "reactions"]
        assert revs == list(range(1, target + 1))
        assert frames[-1]["counts"] == {"👍": 10, "❤": 10} or frames[-1]["counts"] == {"❤": 10, "👍": 10}
    message = await db(Message.objects.get)(room=lobby, seq=1)
    assert message.reactions == {"👍": 10, "❤": 10}
    for ws in sockets + watchers:
        await ws.close()


async def test_a_read_on_one_process_reaches_the_readers_socket_on_the_other(daphne, lobby, make_user, uses_redis):
    ann = await db(make_user)("ann")
    for i in range(3):
        await db(services.message_post)(room=lobby, singer=Singer(user=None, name="g", guest_key="g"), body=f"m{i}")
    one, two = daphne(), daphne()
    here, _ = await open_socket(one, ann)
    there, hello = await open_socket(two, ann)
    assert hello["you"]["read_seq"] is None
    await here.send(json.dumps({"type": "read", "seq": 2}))
    echo = await frames_until(there, lambda f: f["type"] == "read")
    assert echo[-1] == {"type": "read", "room": "lobby", "seq": 2}
    client = Client()
    await db(client.force_login)(ann)
    rooms = (await db(client.get)("/api/rooms/")).json()["rooms"]
    assert [(r["unread"], r["read_seq"]) for r in rooms if r["slug"] == "lobby"] == [(1, 2)]
    for ws in (here, there):
        await ws.close()
