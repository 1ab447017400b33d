"""The conductor's desk: who is online, messages per minute and the last refusals, for staff only."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import AsyncClient
from django.utils import timezone

from choir import logs
from choir.models import Message
from tests.support import connect

pytestmark = pytest.mark.django_db(transaction=True)


def forget_refusals() -> None:
    logs.recent_refusals.local.clear()
    if settings.REDIS_URLS:
        logs.recent_refusals._redis().delete(logs.recent_refusals.key())


async def test_anonymous_visitors_are_sent_to_the_admin_login(lobby):
    response = await AsyncClient().get("/admin/desk/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/admin/desk/")


async def test_signed_in_people_who_are_not_staff_are_sent_to_the_admin_login(lobby, make_user):
    http = AsyncClient()
    await http.aforce_login(await database_sync_to_async(make_user)("bob"))
    response = await http.get("/admin/desk/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


async def test_staff_see_who_is_online_messages_per_minute_and_the_last_refusals(lobby, make_room, make_user):
    await database_sync_to_async(forget_refusals)()
    await database_sync_to_async(make_room)("quiet-hall")
    staff = await database_sync_to_async(make_user)("conductor", is_staff=True)
    alice = await database_sync_to_async(make_user)("alice")

    alto = await connect("lobby", user=alice)
    # Arrivals reach the presence store in batches; its announcement marks the write.
    assert "alice" in (await alto.expect("presence", skip=()))["joined"]
    for n in range(3):
        await alto.say(f"note {n}", client_id=f"d-{n}")
        await alto.expect("message")
    # One message from long ago, outside the window.
    old = timezone.now() - dt.timedelta(minutes=settings.CHOIR_DESK_WINDOW_MINUTES + 10)
    await database_sync_to_async(Message.objects.filter(room=lobby, seq=1).update)(sent_at=old)
    refused = await connect("locked-out", hello=False)
    assert await refused.closed() == 4404

    # The refusal reaches Redis from a worker thread (pass 2): wait for it there.
    deadline = time.monotonic() + 5
    while not any(r["room"] == "locked-out" for r in await database_sync_to_async(logs.recent_refusals.latest)()):
        assert time.monotonic() < deadline, "the refusal was never kept"
        time.sleep(0.05)

    http = AsyncClient()
    await http.aforce_login(staff)
    response = await http.get("/admin/desk/")
    await alto.close()
    assert response.status_code == 200
    page = response.content.decode()
    lobby_row = page.split('data-room="lobby"')[1].split("</tr>")[0]
    assert "1: alice" in lobby_row
    assert '<td class="desk-last-minute">2</td>' in lobby_row
    assert f'<td class="desk-per-minute">{round(2 / settings.CHOIR_DESK_WINDOW_MINUTES, 1)}</td>' in lobby_row
    hall_row = page.split('data-room="quiet-hall"')[1].split("</tr>")[0]
    assert '<td class="desk-online">0</td>' in hall_row
    refusals = page.split('id="desk-refusals"')[1]
    assert "close_4404" in refusals and "locked-out" in refusals
    assert "socket" in page and "open" in page


async def test_the_admin_index_leads_staff_to_the_desk(make_user):
    http = AsyncClient()
    await http.aforce_login(await database_sync_to_async(make_user)("conductor", is_staff=True, is_superuser=True))
    response = await http.get("/admin/")
    assert response.status_code == 200
    assert 'href="/admin/desk/"' in response.content.decode()
    assert "Rooms" in response.content.decode()  # the stock app list is still there
