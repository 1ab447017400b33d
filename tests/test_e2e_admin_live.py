"""Staff actions in admin reach sockets on every server process (Redis layer)."""

import asyncio
import json

import pytest
import websockets
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from choir.models import Message
from tests.support import session_cookie, ws_frames

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def open_socket(server, cookie: bytes | None = None):
    headers = {"Cookie": cookie.decode()} if cookie else None
    ws = await websockets.connect(server.ws("lobby"), additional_headers=headers)
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
    return ws


async def next_of(ws, kind: str) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] == kind:
            return frame


async def close_code(ws) -> int:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code


async def test_admin_actions_reach_sockets_on_two_server_processes(daphne, lobby, make_user, uses_redis):
    staff = await database_sync_to_async(make_user)("boss", is_staff=True, is_superuser=True)
    troll = await database_sync_to_async(make_user)("troll")
    admin = Client()
    await database_sync_to_async(admin.force_login)(staff)
    servers = [daphne(), daphne()]
    listeners = [await open_socket(server) for server in servers]
    troll_cookie = await database_sync_to_async(session_cookie)(troll)
    trolls = [await open_socket(server, troll_cookie) for server in servers]
    changelist = reverse("admin:choir_room_changelist")
    post = database_sync_to_async(admin.post)

    # Announce: stored, sequenced, and heard on both processes.
    await post(changelist, {"action": "announce", "_selected_action": [lobby.pk], "apply": "1", "text": "Rehearsal at 8"})
    for ws in listeners:
        assert (await ws_frames(ws, 1))[0]["body"] == "Rehearsal at 8"

    # Delete it from the message admin: both processes announce the deletion.
    message = await database_sync_to_async(Message.objects.get)(room=lobby, seq=1)
    await post(reverse("admin:choir_message_changelist"), {"action": "delete_selected_messages", "post": "yes", "_selected_action": [message.pk]})
    for ws in listeners:
        assert (await next_of(ws, "deleted"))["seq"] == 1

    # Ban: the user's sockets close with 4403 on both processes; others stay.
    await post(reverse("admin:choir_sanction_add"), {"room": lobby.pk, "user": troll.pk, "kind": "ban", "reason": "spam"})
    for ws in trolls:
        assert await close_code(ws) == 4403

    # Archive: every socket on every process closes with 4410.
    await post(changelist, {"action": "archive_rooms", "post": "yes", "_selected_action": [lobby.pk]})
    for ws in listeners:
        assert (await next_of(ws, "closing"))["code"] == 4410
        assert await close_code(ws) == 4410
