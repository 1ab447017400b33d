"""Conductors moderate from the room page; nobody else can, however they ask."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from choir import services
from django.contrib.messages import get_messages

from choir.access import Singer, access_for
from choir.models import Message, ModerationAction, Room, Sanction
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


# A mute stops posting, editing, reacting and typing; a ban stops everything ---------


async def test_a_muted_singer_can_neither_edit_nor_type_and_nobody_hears_of_it(cast, lobby):
    sock = await connect("lobby", user=cast["singer"])
    watcher = await connect("lobby", user=cast["other"])
    await sock.say("before the mute", client_id="m1")
    seq = (await sock.expect("message"))["seq"]
    await watcher.expect("message")
    await moderate(await client_for(cast["conductor"]), action="mute", username="sam", minutes="10")

    await sock.send({"type": "edit", "seq": seq, "body": "sneaked in while muted"})
    assert (await sock.expect("error"))["code"] == "forbidden"
    await sock.send({"type": "typing"})
    await watcher.nothing(timeout=0.5)
    body = await database_sync_to_async(lambda: Message.objects.get(room=lobby, seq=seq).body)()
    assert body == "before the mute"
    access = await database_sync_to_async(access_for)(lobby, Singer(user=cast["singer"], name="sam"))
    assert not access.can_post and not access.can_act and not access.can_react
    # Taking one's own words back is still allowed.
    await sock.send({"type": "delete", "seq": seq})
    assert (await watcher.expect("deleted"))["seq"] == seq
    await sock.close()
    await watcher.close()


async def test_typing_is_heard_again_once_a_mute_is_lifted(cast, lobby, settings):
    settings.CHOIR_TYPING_INTERVAL = 0.0
    sock = await connect("lobby", user=cast["singer"])
    watcher = await connect("lobby", user=cast["other"])
    conductor = await client_for(cast["conductor"])
    await moderate(conductor, action="mute", username="sam", minutes="10")
    await sock.send({"type": "typing"})
    await watcher.nothing(timeout=0.5)
    await moderate(conductor, action="unmute", username="sam")
    await sock.send({"type": "typing"})
    assert (await watcher.expect("typing", skip=("presence",)))["author"] == "sam"
    await sock.close()
    await watcher.close()


def test_a_ban_stops_even_editing_and_deleting_ones_own_messages(cast, lobby):
    singer = Singer(user=cast["singer"], name="sam")
    seq = services.message_post(room=lobby, singer=singer, body="mine").message.seq
    services.user_ban(room=lobby, actor=services.SYSTEM, user=cast["singer"])
    for call in (
        lambda: services.message_edit(room=lobby, actor=singer, seq=seq, body="still mine"),
        lambda: services.message_delete(room=lobby, actor=singer, seq=seq),
    ):
        with pytest.raises(Refusal) as refused:
            call()
        assert refused.value.code == "forbidden"
    message = Message.objects.get(room=lobby, seq=seq)
    assert (message.body, message.deleted_at) == ("mine", None)
    assert not access_for(lobby, singer).can_act


# The moderation form answers bad numbers with an error, never a 500 ------------------


@pytest.mark.parametrize("field, value", [
    ("minutes", "²"), ("minutes", "¹²"), ("minutes", "①"), ("minutes", "-5"), ("minutes", "1e3"),
    ("minutes", "9" * 12), ("minutes", "99999999"), ("minutes", "9999999999"),
    ("seconds", "²"), ("seconds", "9" * 40),
])
def test_the_moderation_form_refuses_odd_numbers_with_a_message(cast, field, value):
    client = Client()
    client.force_login(cast["conductor"])
    action = "mute" if field == "minutes" else "slow_mode"
    response = client.post(reverse("room-moderate", args=["lobby"]), {"action": action, "username": "sam", field: value})
    assert response.status_code == 302
    errors = [m for m in get_messages(response.wsgi_request) if m.level_tag == "error"]
    assert errors, "no error message for a bad number"
    assert not Sanction.objects.exists()
    assert Room.objects.get(slug="lobby").slow_mode_seconds == 0
