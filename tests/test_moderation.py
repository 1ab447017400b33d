"""Conductors moderate from the room page; nobody else can, however they ask."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from choir import services
from choir.access import Singer
from choir.models import ModerationAction, Room, Sanction
from choir.protocol import Refusal
from tests.support import connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cast(lobby, make_user):
    conductor = make_user("carol")
    services.membership_set(room=lobby, actor=services.SYSTEM, user=conductor, role="conductor")
    return {"conductor": conductor, "singer": make_user("sam"), "other": make_user("otto")}


async def client_for(user) -> Client:
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    return client


def moderate(client: Client, **data):
    return database_sync_to_async(client.post)(reverse("room-moderate", args=["lobby"]), data)


async def test_a_conductor_bans_from_the_room_page_and_the_socket_closes_with_4403(cast):
    sock = await connect("lobby", user=cast["singer"])
    response = await moderate(await client_for(cast["conductor"]), action="ban", username="sam", reason="spam")
    assert response.status_code == 302
    assert (await sock.expect("closing"))["code"] == 4403
    assert await sock.closed() == 4403
    page = await database_sync_to_async((await client_for(cast["singer"])).get)(reverse("room-detail", args=["lobby"]))
    assert page.status_code == 404


async def test_a_conductor_mutes_and_unmutes(cast):
    sock = await connect("lobby", user=cast["singer"])
    conductor = await client_for(cast["conductor"])
    await moderate(conductor, action="mute", username="sam", minutes="10")
    await sock.say("hi", client_id="a")
    assert (await sock.expect("error"))["code"] == "forbidden"
    await moderate(conductor, action="unmute", username="sam")
    await sock.say("hi", client_id="a")
    assert (await sock.expect("message"))["client_id"] == "a"
    actions = await database_sync_to_async(lambda: list(ModerationAction.objects.values_list("action", flat=True)))()
    assert {"mute", "unmute"} <= set(actions)
    await sock.close()


async def test_slow_mode_limits_each_person_to_one_message_per_interval(cast):
    sock = await connect("lobby", user=cast["singer"])
    await moderate(await client_for(cast["conductor"]), action="slow_mode", seconds="60")
    await sock.say("first")
    assert (await sock.expect("message"))["body"] == "first"
    await sock.say("second", client_id="too-soon")
    error = await sock.expect("error")
    assert (error["code"], error["ref"]) == ("rate_limited", "too-soon")
    assert 0 < error["retry_after"] <= 60
    conductor = await connect("lobby", user=cast["conductor"])
    await conductor.say("conductors are not slowed")
    await conductor.say("at all")
    assert [(await conductor.expect("message"))["body"] for _ in range(2)] == ["conductors are not slowed", "at all"]
    await sock.close()
    await conductor.close()


@pytest.mark.parametrize("action", ["ban", "mute", "slow_mode", "unban"])
async def test_non_conductors_get_403_for_crafted_moderation_posts(cast, action):
    response = await moderate(await client_for(cast["other"]), action=action, username="sam", seconds="5", minutes="5")
    assert response.status_code == 403
    assert not await database_sync_to_async(Sanction.objects.exists)()
    room = await database_sync_to_async(Room.objects.get)(slug="lobby")
    assert room.slow_mode_seconds == 0


async def test_guests_are_sent_to_log_in_for_moderation(cast):
    response = await moderate(Client(), action="ban", username="sam")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


async def test_services_refuse_moderation_by_non_conductors(cast, lobby):
    other = Singer(user=cast["other"], name="otto")
    for call in (
        lambda: services.user_ban(room=lobby, actor=other, user=cast["singer"]),
        lambda: services.user_mute(room=lobby, actor=other, user=cast["singer"], minutes=5),
        lambda: services.room_set_slow_mode(room=lobby, actor=other, seconds=5),
        lambda: services.message_redact(room=lobby, actor=other, seq=1),
    ):
        with pytest.raises(Refusal) as refused:
            await database_sync_to_async(call)()
        assert refused.value.code == "forbidden"


async def test_people_who_conduct_every_room_cannot_be_banned(cast, lobby, make_user):
    boss = await database_sync_to_async(make_user)("boss", is_staff=True, is_superuser=True)
    conductor = Singer(user=cast["conductor"], name="carol")
    with pytest.raises(Refusal):
        await database_sync_to_async(services.user_ban)(room=lobby, actor=conductor, user=boss)


async def test_a_conductor_may_delete_anyones_message_over_the_socket(cast):
    author = await connect("lobby", user=cast["singer"])
    conductor = await connect("lobby", user=cast["conductor"])
    await author.say("oops")
    seq = (await author.expect("message"))["seq"]
    await conductor.expect("message")
    await conductor.send({"type": "delete", "seq": seq})
    assert (await author.expect("deleted"))["seq"] == seq
    await author.close()
    await conductor.close()


async def test_in_a_stage_room_only_conductors_sing(make_room, cast):
    room = await database_sync_to_async(make_room)("stage", mode=Room.Mode.STAGE, guests_may_post=True)
    await database_sync_to_async(services.membership_set)(room=room, actor=services.SYSTEM, user=cast["conductor"], role="conductor")
    listener = await connect("stage", user=cast["singer"], hello=False)
    hello = await listener.expect("hello")
    assert hello["you"]["can_post"] is False and hello["room"]["mode"] == "stage"
    await listener.say("me too", client_id="l1")
    assert (await listener.expect("error"))["code"] == "forbidden"
    guest = await connect("stage")
    await guest.say("and me")
    assert (await guest.expect("error"))["code"] == "forbidden"
    conductor = await connect("stage", user=cast["conductor"])
    await conductor.say("welcome to the show")
    for sock in (listener, guest, conductor):
        assert (await sock.expect("message"))["body"] == "welcome to the show"
    for sock in (listener, guest, conductor):
        await sock.close()
