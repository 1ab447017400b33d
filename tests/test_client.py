"""choir.client against real Daphne: follows in order, posts with retries that store once, resumes across a restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
import websockets
from channels.db import database_sync_to_async

from choir import services
from choir.client import Backoff, Closed, RoomClient
from choir.models import Message
from tests.support import ROOT, session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

QUICK = Backoff(base=0.1, factor=2, cap=1.0)


async def take(room: RoomClient, count: int, timeout: float = 30.0) -> list[dict]:
    """The next `count` messages out of the client's iterator."""

    async def collect() -> list[dict]:
        found = []
        async for message in room:
            found.append(message)
            if len(found) == count:
                return found
        return found

    return await asyncio.wait_for(collect(), timeout)


async def post_raw(url: str, bodies: list[str]) -> None:
    """Post through a bare socket and wait for each acknowledgement."""
    async with websockets.connect(url) as ws:
        for body in bodies:
            await ws.send(json.dumps({"type": "say", "body": body, "client_id": body}))
        acked = 0
        while acked < len(bodies):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            acked += frame["type"] == "message"


@database_sync_to_async
def stored(client_id: str) -> int:
    return Message.objects.filter(client_id=client_id).count()


@database_sync_to_async
def cookie_header(user) -> dict[str, str]:
    return {"Cookie": session_cookie(user).decode()}


async def test_it_follows_a_room_in_order(daphne, lobby):
    server = daphne()
    async with RoomClient(server.ws("lobby"), name="reader") as room:
        assert room.hello["room"]["slug"] == "lobby"
        await post_raw(server.ws("lobby"), [f"note {i}" for i in range(5)])
        messages = await take(room, 5)
    assert [(m["seq"], m["body"]) for m in messages] == [(i + 1, f"note {i}") for i in range(5)]


async def test_a_post_is_acknowledged_and_a_retry_stores_nothing_new(daphne, lobby, make_user):
    server = daphne()
    headers = await cookie_header(await database_sync_to_async(make_user)("ann"))
    async with RoomClient(server.ws("lobby"), headers=headers) as room:
        first = await room.say("Rehearsal at eight", client_id="rehearsal-1")
        again = await room.say("Rehearsal at eight", client_id="rehearsal-1")
        automatic = await room.say("No id given")
    # A retry from another connection, as after a reconnect, is the same message too.
    async with RoomClient(server.ws("lobby"), headers=headers) as other:
        retried = await other.say("Rehearsal at eight", client_id="rehearsal-1")
    assert first["seq"] == again["seq"] == retried["seq"] == 1 and first["author"] == "ann"
    assert automatic["seq"] == 2 and automatic["client_id"]
    assert await stored("rehearsal-1") == 1
    assert await database_sync_to_async(Message.objects.count)() == 2


async def test_it_resumes_after_the_server_restarts_with_nothing_missed_or_doubled(daphne, lobby, make_user):
    server = daphne()
    headers = await cookie_header(await database_sync_to_async(make_user)("ann"))
    room = RoomClient(server.ws("lobby"), headers=headers, backoff=QUICK)
    await room.start()
    await post_raw(server.ws("lobby"), [f"before {i}" for i in range(5)])
    got = await take(room, 5)

    server.stop()
    # While the server is down: others post (straight to the database), and so does the client.
    for i in range(5):
        await database_sync_to_async(services.announce)(room=lobby, text=f"while down {i}", actor=services.SYSTEM)
    pending = asyncio.create_task(room.say("sent while down", client_id="down-1"))
    await asyncio.sleep(0.5)
    assert not pending.done() and not room.connected

    restarted = daphne(port=server.port)
    ack = await asyncio.wait_for(pending, 30)
    await post_raw(restarted.ws("lobby"), [f"after {i}" for i in range(5)])
    got += await take(room, 11)
    await room.close()

    assert [m["seq"] for m in got] == list(range(1, 17))
    bodies = [m["body"] for m in got]
    assert bodies[:10] == [f"before {i}" for i in range(5)] + [f"while down {i}" for i in range(5)]
    assert sorted(bodies[10:]) == sorted(["sent while down"] + [f"after {i}" for i in range(5)])
    assert ack["seq"] == got[bodies.index("sent while down")]["seq"]
    assert await stored("down-1") == 1
    assert room.connects == 2


async def test_a_replay_past_the_limit_is_read_from_the_history_api(daphne, lobby):
    server = daphne(extra_env={"CHOIR_REPLAY_LIMIT": "3"})
    for i in range(10):
        await database_sync_to_async(services.announce)(room=lobby, text=f"old {i}", actor=services.SYSTEM)
    async with RoomClient(server.ws("lobby"), after=0) as room:
        messages = await take(room, 10)
    assert [(m["seq"], m["body"]) for m in messages] == [(i + 1, f"old {i}") for i in range(10)]


async def test_a_room_that_does_not_exist_ends_the_client_with_4404(daphne, lobby):
    server = daphne()
    with pytest.raises(Closed) as refused:
        await RoomClient(server.ws("nowhere"), backoff=QUICK).start()
    assert refused.value.code == 4404


def test_the_command_line_posts_a_line_from_stdin_and_prints_it(daphne, lobby):
    server = daphne()
    done = subprocess.run(
        [sys.executable, "-m", "choir.client", f"{server.url}/rooms/lobby/", "--name", "ci"],
        input="Deployed build 42\n\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["#1 ci (guest): Deployed build 42"]
    assert list(Message.objects.values_list("body", flat=True)) == ["Deployed build 42"]


async def test_a_script_with_a_token_posts_retries_safely_follows_and_is_refused_once_revoked(daphne, lobby, make_user):
    """Header and ?token= alike."""
    from choir.access import SYSTEM
    from choir.services import tokens
    bot = await database_sync_to_async(make_user)("deploybot")
    row, secret = await database_sync_to_async(tokens.token_issue)(user=bot, name="ci", actor=SYSTEM)
    server = daphne()
    async with RoomClient(server.ws("lobby"), token=secret, backoff=QUICK) as room:
        assert room.hello["you"]["name"] == "deploybot"
        first = await room.say("Deployed 1.2.3", client_id="deploy-1.2.3")
    async with RoomClient(server.ws("lobby"), token=secret, token_in_query=True, backoff=QUICK) as room:
        again = await room.say("Deployed 1.2.3", client_id="deploy-1.2.3")
        await post_raw(server.ws("lobby"), ["thanks"])
        assert [m["body"] for m in await take(room, 1)] == ["thanks"]
    assert again["seq"] == first["seq"] and again["author"] == "deploybot"
    assert await stored("deploy-1.2.3") == 1
    await database_sync_to_async(tokens.token_revoke)(token=row, actor=SYSTEM)
    with pytest.raises(Closed) as closed:
        await RoomClient(server.ws("lobby"), token=secret, backoff=QUICK).start()
    assert closed.value.code == 4401
