"""What staff do in Django admin reaches open sockets at once."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from choir import services
from choir.access import Singer
from choir.models import Membership, Message, ModerationAction, Room, Sanction
from tests.support import connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff(make_user):
    return make_user("boss", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(staff):
    client = Client()
    client.force_login(staff)
    return client


def post(client: Client, url: str, data: dict):
    return database_sync_to_async(client.post)(url, data)


def room_form(**changes) -> dict:
    """The lobby's admin change form as a browser would post it, with changes."""
    form = {
        "slug": "lobby", "title": "Lobby", "topic": "", "is_public": "on", "guests_may_post": "on",
        "mode": "open", "status": "open", "slow_mode_seconds": "0", "created_at_0": "2026-01-01",
        "created_at_1": "00:00:00",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
    }
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


async def posted_message(room: Room, body: str) -> int:
    singer = Singer(user=None, name="someone", guest_key="k")
    posted = await database_sync_to_async(services.message_post)(room=room, singer=singer, body=body)
    return posted.message.seq


async def test_archiving_a_room_in_admin_closes_its_sockets_with_4410(lobby, staff_client):
    sock = await connect("lobby")
    response = await post(
        staff_client, reverse("admin:choir_room_changelist"), {"action": "archive_rooms", "post": "yes", "_selected_action": [lobby.pk]}
    )
    assert response.status_code == 302
    closing = await sock.expect("closing")
    assert closing["code"] == 4410
    assert await sock.closed() == 4410
    assert (await database_sync_to_async(Room.objects.get)(pk=lobby.pk)).status == Room.Status.ARCHIVED


async def test_archiving_through_the_change_form_closes_sockets_and_reopening_lets_people_back(lobby, staff_client):
    sock = await connect("lobby")
    url = reverse("admin:choir_room_change", args=[lobby.pk])
    form = room_form(status="archived")
    response = await post(staff_client, url, form)
    assert response.status_code == 302, response.content[:2000]
    assert await sock.closed() == 4410
    refused = await connect("lobby", hello=False)
    assert (await refused.expect("closing"))["code"] == 4410
    response = await post(staff_client, url, {**form, "status": "open"})
    assert response.status_code == 302
    back = await connect("lobby")
    await back.say("back again")
    assert (await back.expect("message"))["body"] == "back again"
    await back.close()


async def test_switching_a_room_to_stage_mode_in_admin_applies_to_open_sockets(lobby, staff_client):
    sock = await connect("lobby")
    url = reverse("admin:choir_room_change", args=[lobby.pk])
    form = room_form(mode="stage")
    assert (await post(staff_client, url, form)).status_code == 302
    await sock.say("can I still sing?", client_id="s1")
    error = await sock.expect("error")
    assert (error["code"], error["ref"]) == ("forbidden", "s1")
    assert "stage" in error["detail"]
    await sock.close()


async def test_deleting_and_redacting_messages_in_admin_is_broadcast(lobby, staff_client):
    sock = await connect("lobby")
    first = await posted_message(lobby, "rude")
    second = await posted_message(lobby, "ruder")
    await sock.expect("message")
    await sock.expect("message")
    ids = await database_sync_to_async(lambda: {m.seq: m.pk for m in Message.objects.filter(room=lobby)})()
    changelist = reverse("admin:choir_message_changelist")
    await post(staff_client, changelist, {"action": "delete_selected_messages", "post": "yes", "_selected_action": [ids[first]]})
    assert (await sock.expect("deleted"))["seq"] == first
    await post(staff_client, changelist, {"action": "redact_selected_messages", "post": "yes", "_selected_action": [ids[second]]})
    edited = await sock.expect("edited")
    assert (edited["seq"], edited["body"]) == (second, services.REDACTED)
    remaining = await database_sync_to_async(lambda: list(Message.objects.filter(room=lobby).order_by("seq")))()
    assert [m.seq for m in remaining] == [first, second]
    assert remaining[0].deleted_at is not None and remaining[0].body == ""
    response = await database_sync_to_async(staff_client.get)("/api/rooms/lobby/messages")
    api = response.json()["messages"]
    assert api[0]["deleted"] is True and api[0]["body"] == ""
    assert api[1]["body"] == services.REDACTED
    await sock.close()


async def test_editing_a_message_body_in_admin_is_broadcast(lobby, staff_client):
    sock = await connect("lobby")
    seq = await posted_message(lobby, "typo")
    await sock.expect("message")
    pk = await database_sync_to_async(lambda: Message.objects.get(room=lobby, seq=seq).pk)()
    response = await post(staff_client, reverse("admin:choir_message_change", args=[pk]), {"body": "fixed"})
    assert response.status_code == 302
    edited = await sock.expect("edited")
    assert (edited["seq"], edited["body"]) == (seq, "fixed")
    await sock.close()


async def test_the_announce_action_posts_through_the_write_path(lobby, staff_client):
    sock = await connect("lobby")
    changelist = reverse("admin:choir_room_changelist")
    page = await post(staff_client, changelist, {"action": "announce", "_selected_action": [lobby.pk]})
    assert page.status_code == 200 and b"Announce" in page.content
    await post(
        staff_client, changelist,
        {"action": "announce", "_selected_action": [lobby.pk], "apply": "1", "text": "Rehearsal at 8"},
    )
    frame = await sock.expect("message")
    assert (frame["body"], frame["author"], frame["seq"]) == ("Rehearsal at 8", "boss", 1)
    await sock.close()


async def test_banning_in_admin_closes_the_users_sockets_with_4403_and_keeps_them_out(lobby, staff_client, make_user):
    target = await database_sync_to_async(make_user)("troll")
    sock = await connect("lobby", user=target)
    bystander = await connect("lobby")
    response = await post(
        staff_client, reverse("admin:choir_sanction_add"),
        {"room": lobby.pk, "user": target.pk, "kind": "ban", "reason": "spam"},
    )
    assert response.status_code == 302
    assert (await sock.expect("closing"))["code"] == 4403
    assert await sock.closed() == 4403
    again = await connect("lobby", user=target, hello=False)
    assert (await again.expect("closing"))["code"] == 4403
    await bystander.send({"type": "ping"})
    await bystander.expect("pong")
    log = await database_sync_to_async(lambda: list(ModerationAction.objects.values_list("action", "actor__username")))()
    assert ("ban", "boss") in log
    await bystander.close()


async def test_muting_in_admin_refuses_posts_until_lifted(lobby, staff_client, make_user):
    target = await database_sync_to_async(make_user)("loud")
    sock = await connect("lobby", user=target)
    await post(
        staff_client, reverse("admin:choir_sanction_add"),
        {"room": lobby.pk, "user": target.pk, "kind": "mute", "minutes": "5", "reason": "calm down"},
    )
    await sock.say("hello?", client_id="m1")
    error = await sock.expect("error")
    assert error["code"] == "forbidden" and "muted" in error["detail"]
    sanction = await database_sync_to_async(Sanction.objects.get)(user=target)
    await post(staff_client, reverse("admin:choir_sanction_changelist"), {"action": "lift", "post": "yes", "_selected_action": [sanction.pk]})
    await sock.say("hello?", client_id="m1")
    assert (await sock.expect("message"))["body"] == "hello?"
    await sock.close()


async def test_making_a_room_private_drops_non_members(lobby, staff_client, make_user):
    member = await database_sync_to_async(make_user)("mia")
    await database_sync_to_async(services.membership_set)(room=lobby, actor=services.SYSTEM, user=member, role="member")
    guest = await connect("lobby")
    inside = await connect("lobby", user=member)
    url = reverse("admin:choir_room_change", args=[lobby.pk])
    form = room_form(is_public=None, **{"memberships-INITIAL_FORMS": "1"})
    response = await post(staff_client, url, form)
    assert response.status_code == 302, response.content[:3000]
    assert await guest.closed() == 4404  # the room is now as missing to them as any other
    await inside.send({"type": "ping"})
    await inside.expect("pong")
    await inside.close()
    assert await database_sync_to_async(Membership.objects.filter(user=member).exists)()


async def test_non_staff_cannot_use_admin_actions(lobby, make_user):
    user = await database_sync_to_async(make_user)("pleb")
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    sock = await connect("lobby")
    response = await post(
        client, reverse("admin:choir_room_changelist"), {"action": "archive_rooms", "post": "yes", "_selected_action": [lobby.pk]}
    )
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    await sock.send({"type": "ping"})
    await sock.expect("pong")
    assert (await database_sync_to_async(Room.objects.get)(pk=lobby.pk)).status == Room.Status.OPEN
    await sock.close()
