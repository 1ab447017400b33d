"""Who may do what: every kind of person against every admin action, the
conductor's moderation form and every socket frame that changes state.

Authority comes from Django permissions and room roles; staff status alone
grants nothing. Each case asserts that an allowed change took effect and a
refused one changed nothing.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from choir import services
from choir.access import SYSTEM, Singer
from choir.models import Membership, Message, Room, Sanction
from choir.protocol import Refusal
from tests.support import connect

ROLES = ["superuser", "moderator", "announcer", "room_keeper", "message_editor", "viewer", "conductor", "member", "guest"]

# Staff users get exactly these permissions (codenames in the choir app).
GRANTS = {
    "moderator": ["moderate_any_room", "view_room", "view_message", "change_message", "view_sanction", "add_sanction"],
    "announcer": ["announce", "view_room"],
    "room_keeper": [
        "view_room", "change_room", "delete_room", "view_membership", "add_membership", "change_membership",
        "delete_membership",
    ],
    # May change messages by Django's model permission, but editing someone's
    # words is moderation: without moderate_any_room the admin refuses too.
    "message_editor": ["view_room", "view_message", "change_message"],
    "viewer": ["view_room", "view_message", "view_sanction", "view_membership", "view_moderationaction"],
}


def make_person(role: str, make_user, rooms: list[Room]):
    """The user for a role (None for a guest)."""
    if role == "guest":
        return None
    if role == "superuser":
        return make_user(role, is_staff=True, is_superuser=True)
    if role in GRANTS:
        user = make_user(role, is_staff=True)
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label="choir", codename__in=GRANTS[role]))
        return user
    user = make_user(role)
    for room in rooms:
        services.membership_set(room=room, actor=SYSTEM, user=user, role=role)
    return user


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


# Admin ---------------------------------------------------------------------------


@pytest.fixture
def world(lobby, make_room, make_user):
    troll = make_user("troll")
    hall = make_room("hall", status=Room.Status.ARCHIVED)
    posted = services.message_post(room=lobby, singer=Singer(user=troll, name="troll"), body="rude words")
    sanction = services.user_mute(room=lobby, actor=SYSTEM, user=troll, minutes=None)
    return {"lobby": lobby, "hall": hall, "troll": troll, "message": posted.message, "sanction": sanction}


def _room_form(room: Room, **changes) -> dict:
    form = {
        "slug": room.slug, "title": room.title, "topic": room.topic, "is_public": "on", "guests_may_post": "on",
        "mode": "open", "status": "open", "slow_mode_seconds": "0", "created_at_0": "2026-01-01",
        "created_at_1": "00:00:00",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
    }
    form.update(changes)
    return form


def _changelist(model: str) -> str:
    return reverse(f"admin:choir_{model}_changelist")


# name: (url, posted data, does it need a confirmation first, has it taken effect)
ADMIN = {
    "archive_rooms": lambda w: (
        _changelist("room"), {"action": "archive_rooms", "_selected_action": [w["lobby"].pk]}, True,
        lambda: Room.objects.get(pk=w["lobby"].pk).status == Room.Status.ARCHIVED,
    ),
    "reopen_rooms": lambda w: (
        _changelist("room"), {"action": "reopen_rooms", "_selected_action": [w["hall"].pk]}, False,
        lambda: Room.objects.get(pk=w["hall"].pk).status == Room.Status.OPEN,
    ),
    "announce": lambda w: (
        _changelist("room"),
        {"action": "announce", "_selected_action": [w["lobby"].pk], "apply": "1", "text": "Rehearsal at 8"}, False,
        lambda: Message.objects.filter(room=w["lobby"], body="Rehearsal at 8").exists(),
    ),
    "delete_selected (rooms)": lambda w: (
        _changelist("room"), {"action": "delete_selected", "_selected_action": [w["hall"].pk]}, True,
        lambda: not Room.objects.filter(pk=w["hall"].pk).exists(),
    ),
    "delete_selected_messages": lambda w: (
        _changelist("message"), {"action": "delete_selected_messages", "_selected_action": [w["message"].pk]}, True,
        lambda: Message.objects.get(pk=w["message"].pk).deleted_at is not None,
    ),
    "redact_selected_messages": lambda w: (
        _changelist("message"), {"action": "redact_selected_messages", "_selected_action": [w["message"].pk]}, True,
        lambda: Message.objects.get(pk=w["message"].pk).body == services.REDACTED,
    ),
    "lift": lambda w: (
        _changelist("sanction"), {"action": "lift", "_selected_action": [w["sanction"].pk]}, True,
        lambda: Sanction.objects.get(pk=w["sanction"].pk).lifted_at is not None,
    ),
    "save room (archive in the form)": lambda w: (
        reverse("admin:choir_room_change", args=[w["lobby"].pk]), _room_form(w["lobby"], status="archived"), False,
        lambda: Room.objects.get(pk=w["lobby"].pk).status == Room.Status.ARCHIVED,
    ),
    "edit message": lambda w: (
        reverse("admin:choir_message_change", args=[w["message"].pk]), {"body": "kind words"}, False,
        lambda: Message.objects.get(pk=w["message"].pk).body == "kind words",
    ),
    "add sanction (ban)": lambda w: (
        reverse("admin:choir_sanction_add"),
        {"room": w["lobby"].pk, "user": w["troll"].pk, "kind": "ban", "reason": "spam", "minutes": ""}, False,
        lambda: Sanction.objects.filter(user=w["troll"], kind=Sanction.Kind.BAN).exists(),
    ),
    "add membership": lambda w: (
        reverse("admin:choir_membership_add"),
        {"room": w["lobby"].pk, "user": w["troll"].pk, "role": "member", "joined_at_0": "2026-01-01", "joined_at_1": "00:00:00"},
        False,
        lambda: Membership.objects.filter(room=w["lobby"], user=w["troll"]).exists(),
    ),
}

ADMIN_ALLOWED = {
    "archive_rooms": {"superuser", "room_keeper"},
    "reopen_rooms": {"superuser", "room_keeper"},
    "announce": {"superuser", "announcer"},
    "delete_selected (rooms)": {"superuser", "room_keeper"},
    "delete_selected_messages": {"superuser", "moderator"},
    "redact_selected_messages": {"superuser", "moderator"},
    "lift": {"superuser", "moderator"},
    "save room (archive in the form)": {"superuser", "room_keeper"},
    "edit message": {"superuser", "moderator"},
    "add sanction (ban)": {"superuser", "moderator"},
    "add membership": {"superuser", "room_keeper"},
}


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ADMIN))
def test_admin_actions_are_allowed_by_permission_and_nothing_else(world, make_user, role, action):
    person = make_person(role, make_user, [world["lobby"], world["hall"]])
    client = client_for(person)
    url, data, confirms, done = ADMIN[action](world)
    if role in ADMIN_ALLOWED[action]:
        if confirms:
            page = client.post(url, data)
            assert page.status_code == 200 and b'name="post" value="yes"' in page.content, page.content[:2000]
            assert not done(), "a destructive action acted before it was confirmed"
            data = {**data, "post": "yes"}
        response = client.post(url, data)
        assert response.status_code in (200, 302), response.content[:2000]
        assert done(), f"{role} was allowed {action} but nothing happened"
    else:
        response = client.post(url, {**data, "post": "yes"})
        assert response.status_code in (200, 302, 403), response.status_code
        assert not done(), f"{role} could {action}"


def test_every_admin_action_declares_its_permissions():
    from django.contrib import admin

    for model_admin in admin.site._registry.values():
        if model_admin.model._meta.app_label != "choir":
            continue
        for name in model_admin.actions or []:
            func = getattr(model_admin, name)
            assert getattr(func, "allowed_permissions", None), f"{type(model_admin).__name__}.{name} declares no permissions"


# The conductor's moderation form ---------------------------------------------------

FORM = {
    "mute": ({"action": "mute", "username": "troll", "minutes": "5"},
             lambda w: Sanction.objects.filter(user=w["troll"], kind="mute", lifted_at=None).count() == 2),
    "ban": ({"action": "ban", "username": "troll"},
            lambda w: Sanction.objects.filter(user=w["troll"], kind="ban").exists()),
    "unmute": ({"action": "unmute", "username": "troll"},
               lambda w: Sanction.objects.get(pk=w["sanction"].pk).lifted_at is not None),
    "slow_mode": ({"action": "slow_mode", "seconds": "5"},
                  lambda w: Room.objects.get(pk=w["lobby"].pk).slow_mode_seconds == 5),
}
FORM_ALLOWED = {"superuser", "moderator", "conductor"}


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(FORM))
def test_the_moderation_form_is_for_conductors_and_holders_of_moderate_any_room(world, make_user, role, action):
    person = make_person(role, make_user, [world["lobby"]])
    data, done = FORM[action]
    response = client_for(person).post(reverse("room-moderate", args=["lobby"]), data)
    if role in FORM_ALLOWED:
        assert response.status_code == 302
        assert done(world)
    else:
        assert response.status_code in (302, 403)  # a guest is sent to sign in
        assert response.status_code == 403 or "/accounts/login/" in response["Location"]
        assert not done(world)


def test_staff_status_alone_neither_conducts_nor_sees_private_rooms(make_room, make_user):
    from choir.access import access_for
    from choir.selectors import visible_rooms

    secret = make_room("secret", is_public=False)
    staff = make_user("staff", is_staff=True)
    access = access_for(secret, Singer(user=staff, name="staff"))
    assert not access.can_view and not access.is_conductor
    assert secret not in visible_rooms(staff)
    staff.user_permissions.add(Permission.objects.get(codename="moderate_any_room"))
    staff = type(staff).objects.get(pk=staff.pk)  # Django caches permissions per user object
    access = access_for(secret, Singer(user=staff, name="staff"))
    assert access.can_view and access.is_conductor
    assert secret in visible_rooms(staff)
    assert client_for(staff).get(reverse("room-detail", args=["secret"])).status_code == 200


def test_a_group_can_be_given_the_right_to_announce(lobby, make_user):
    from django.contrib.auth.models import Group

    heralds = Group.objects.create(name="heralds")
    heralds.permissions.add(Permission.objects.get(codename="announce"))
    herald = make_user("herald")
    with pytest.raises(Refusal):
        services.announce(room=lobby, text="hear ye", actor=Singer(user=herald, name="herald"))
    herald.groups.add(heralds)
    herald = type(herald).objects.get(pk=herald.pk)
    services.announce(room=lobby, text="hear ye", actor=Singer(user=herald, name="herald"))
    assert Message.objects.filter(room=lobby, body="hear ye", author=herald).exists()


@pytest.mark.django_db
def test_services_refuse_a_missing_actor(lobby):
    for call in (
        lambda: services.announce(room=lobby, text="x", actor=None),
        lambda: services.room_archive(room=lobby, actor=None),
        lambda: services.membership_set(room=lobby, actor=None, user=None, role="member"),
        lambda: services.messages_prune(room=lobby, actor=None, older_than=None),
        lambda: services.room_set_slow_mode(room=lobby, actor=None, seconds=5),
    ):
        with pytest.raises(TypeError):
            call()
    assert Room.objects.get(pk=lobby.pk).status == Room.Status.OPEN


@pytest.mark.django_db
def test_announcing_through_message_post_needs_the_permission_too(lobby, make_user):
    user = make_user("sneaky")
    with pytest.raises(Refusal):
        services.message_post(room=lobby, singer=Singer(user=user, name="x"), body="official", announcement=True)
    assert not Message.objects.filter(body="official").exists()


# Socket frames ------------------------------------------------------------------------

SOCKET_ROLES = ["superuser", "moderator", "viewer", "conductor", "member", "guest"]
SOCKET_ALLOWED = {"superuser", "moderator", "conductor"}


@pytest.fixture
def stage_world(lobby, make_room, make_user):
    stage = make_room("stage", mode=Room.Mode.STAGE, guests_may_post=True)
    troll = make_user("troll")
    observer = make_user("olive")
    seq = services.message_post(room=lobby, singer=Singer(user=troll, name="troll"), body="rude words").message.seq
    return {"lobby": lobby, "stage": stage, "troll": troll, "observer": observer, "seq": seq}


async def _person(role, make_user, rooms):
    return await database_sync_to_async(make_person)(role, make_user, rooms)


def _body(room, seq):
    return database_sync_to_async(lambda: Message.objects.values_list("body", "deleted_at").get(room=room, seq=seq))()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", SOCKET_ROLES)
@pytest.mark.parametrize("frame", ["edit", "delete"])
async def test_changing_someone_elses_message_over_the_socket(stage_world, make_user, role, frame):
    w = stage_world
    person = await _person(role, make_user, [w["lobby"], w["stage"]])
    watcher = await connect("lobby", user=w["observer"])
    actor = await connect("lobby", user=person)
    if frame == "edit":
        await actor.send({"type": "edit", "seq": w["seq"], "body": "changed"})
    else:
        await actor.send({"type": "delete", "seq": w["seq"]})
    if role in SOCKET_ALLOWED:
        answer = await watcher.expect("edited" if frame == "edit" else "deleted")
        assert answer["seq"] == w["seq"]
        body, deleted_at = await _body(w["lobby"], w["seq"])
        assert (body == "changed") if frame == "edit" else (deleted_at is not None)
    else:
        assert (await actor.expect("error"))["code"] == "forbidden"
        assert (await _body(w["lobby"], w["seq"])) == ("rude words", None)
        await watcher.nothing()
    await actor.close()
    await watcher.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", SOCKET_ROLES)
@pytest.mark.parametrize("frame", ["say", "typing"])
async def test_in_a_stage_room_only_conductors_say_or_type(stage_world, make_user, role, frame):
    w = stage_world
    person = await _person(role, make_user, [w["stage"]])
    watcher = await connect("stage", user=w["observer"])
    actor = await connect("stage", user=person)
    if frame == "say":
        await actor.say("from the stage", client_id="s1")
    else:
        await actor.send({"type": "typing"})
    stored = database_sync_to_async(Message.objects.filter(room=w["stage"], body="from the stage").exists)
    if role in SOCKET_ALLOWED:
        if frame == "say":
            assert (await watcher.expect("message"))["body"] == "from the stage"
            assert await stored()
        else:
            assert (await watcher.expect("typing", skip=("presence",)))["author"] == actor.frames[0]["you"]["name"]
    else:
        if frame == "say":
            assert (await actor.expect("error"))["code"] == "forbidden"
        await watcher.nothing(timeout=0.5)
        assert not await stored()
    await actor.close()
    await watcher.close()


# A private room is missing to outsiders, everywhere ----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
def test_a_private_room_answers_outsiders_exactly_like_a_missing_room_over_http(make_room, make_user, settings, debug):
    settings.DEBUG = debug  # with DEBUG on, the page shows the 404's reason
    make_room("secret", is_public=False)
    for user in (None, make_user("eve")):
        client = client_for(user)
        for method, path in (
            ("get", "/rooms/{}/"), ("get", "/api/rooms/{}/messages"), ("post", "/rooms/{}/guest-name"),
            ("post", "/rooms/{}/moderate"),
        ):
            if path.endswith("moderate") and user is None:
                continue  # sign in first, whatever the room
            answers = []
            for slug in ("secret", "nothing-here"):
                response = getattr(client, method)(path.format(slug), {"action": "ban", "username": "x"} if method == "post" else {})
                answers.append((response.status_code, response.content.decode().replace(slug, "<slug>")))
            assert answers[0] == answers[1], (path, user)
            assert answers[0][0] == 404


@pytest.mark.django_db(transaction=True)
async def test_removing_someone_from_a_private_room_closes_their_socket_as_if_it_were_gone(make_room, make_user):
    room = await database_sync_to_async(make_room)("secret", is_public=False)
    mia = await database_sync_to_async(make_user)("mia")
    await database_sync_to_async(services.membership_set)(room=room, actor=SYSTEM, user=mia, role="member")
    sock = await connect("secret", user=mia)
    await database_sync_to_async(services.membership_remove)(room=room, actor=SYSTEM, user=mia)
    closing = await sock.expect("closing")
    assert (closing["code"], closing["reason"]) == (4404, "no such room")
