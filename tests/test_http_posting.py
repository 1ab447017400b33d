"""Posting, editing and deleting over HTTP: the socket's write path, rules, limits and codes."""

import json

import pytest
from channels.db import database_sync_to_async
from django.db import DatabaseError
from django.test import Client

from choir import services
from choir.access import Singer
from choir.models import Message, Room
from tests.support import connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ann(make_user):
    return make_user("ann")


@pytest.fixture
def ann_token(ann):
    return services.token_issue(actor=services.SYSTEM, user=ann, name="script")[1]


def api(token=None, **extra):
    client = Client(**({"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}), **extra)
    return client


def post(client, slug="lobby", **payload):
    return client.post(f"/api/rooms/{slug}/messages", json.dumps(payload), content_type="application/json")


def test_a_token_posts_201_with_the_message_and_a_retry_is_200_with_the_original(lobby, ann_token):
    client = api(ann_token)
    first = post(client, body="deploy 41 done", client_id="deploy-41")
    assert first.status_code == 201
    message = first.json()
    assert message["type"] == "message" and message["seq"] == 1 and message["author"] == "ann"
    assert message["body"] == "deploy 41 done" and message["client_id"] == "deploy-41" and message["room"] == "lobby"
    again = post(client, body="deploy 41 done", client_id="deploy-41")
    assert again.status_code == 200 and again.json() == message
    assert Message.objects.count() == 1
    assert post(client, body="no id").status_code == 201
    assert Room.objects.get(pk=lobby.pk).last_seq == 2
    # The history API shows the same object (plus `mine`, the caller's own reactions).
    shown = client.get("/api/rooms/lobby/messages").json()["messages"][0]
    assert shown.pop("mine") == [] and shown == message


async def test_a_message_posted_over_http_reaches_the_sockets(lobby, ann_token):
    sock = await connect("lobby")
    response = await database_sync_to_async(post)(api(ann_token), body="over http", client_id="h1")
    assert response.status_code == 201
    frame = await sock.expect("message")
    assert frame == response.json()
    await sock.close()


@pytest.mark.parametrize(
    "payload, detail",
    [
        ({"body": ""}, "empty"),
        ({"body": 5}, "string"),
        ({}, "string"),
        ({"body": "x" * 5000}, "longer"),
        ({"body": "hi", "client_id": ""}, "client_id"),
        ({"body": "hi", "reply_to": "three"}, "reply_to"),
    ],
)
def test_bad_input_is_400_with_code_and_detail_and_stores_nothing(lobby, ann_token, payload, detail):
    response = post(api(ann_token), **payload)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid" and detail in response.json()["detail"]
    assert not Message.objects.exists()


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"null"])
def test_a_body_that_is_not_a_json_object_is_400(lobby, ann_token, raw):
    response = api(ann_token).post("/api/rooms/lobby/messages", raw, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_a_bad_token_is_401_and_nobody_at_all_is_401(lobby):
    response = post(api("choir_bad_token"), body="hi")
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"
    assert post(Client(), body="hi").status_code == 401
    assert not Message.objects.exists()


def test_a_session_needs_the_csrf_token(lobby, ann):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ann)
    refused = post(client, body="hi")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden" and "CSRF" in refused.json()["detail"]
    client.get("/")  # sets the csrftoken cookie, as the room page does
    csrf = client.cookies["csrftoken"].value
    accepted = client.post(
        "/api/rooms/lobby/messages", json.dumps({"body": "hi", "client_id": "b1"}),
        content_type="application/json", HTTP_X_CSRFTOKEN=csrf,
    )
    assert accepted.status_code == 201 and accepted.json()["author"] == "ann"


def test_a_token_needs_no_csrf_token(lobby, ann_token):
    assert post(api(ann_token, enforce_csrf_checks=True), body="hi").status_code == 201


def test_hidden_rooms_are_404_whoever_asks(lobby, make_room, ann, ann_token):
    make_room("club", is_public=False)
    hall = make_room("hall")
    assert post(api(ann_token), "club", body="hi").status_code == 404
    assert post(api(ann_token), "nowhere", body="hi").json()["code"] == "not_found"
    limited = services.token_issue(actor=services.SYSTEM, user=ann, name="hall only", rooms=[hall])[1]
    assert post(api(limited), "lobby", body="hi").status_code == 404
    assert post(api(limited), "hall", body="hi").status_code == 201


def test_a_read_only_token_may_not_post_edit_or_delete(lobby, ann):
    writer = services.token_issue(actor=services.SYSTEM, user=ann, name="rw")[1]
    reader = services.token_issue(actor=services.SYSTEM, user=ann, name="ro", read_only=True)[1]
    assert post(api(writer), body="mine").status_code == 201
    response = post(api(reader), body="hi")
    assert response.status_code == 403 and "read-only" in response.json()["detail"]
    assert api(reader).patch("/api/rooms/lobby/messages/1", json.dumps({"body": "x"}), content_type="application/json").status_code == 403
    assert api(reader).delete("/api/rooms/lobby/messages/1").status_code == 403
    assert api(reader).get("/api/rooms/lobby/messages").status_code == 200


def test_the_rooms_rules_mutes_stage_mode_and_archive_refuse_with_403(lobby, make_user, ann, ann_token):
    boss = Singer(user=make_user("boss", is_staff=True, is_superuser=True), name="boss")
    services.user_mute(room=lobby, actor=boss, user=ann, minutes=10)
    muted = post(api(ann_token), body="hi")
    assert muted.status_code == 403 and "muted" in muted.json()["detail"]
    stage = services.room_create(slug="stage", title="Stage", mode=Room.Mode.STAGE, actor=services.SYSTEM)
    assert post(api(ann_token), "stage", body="hi").status_code == 403
    services.room_archive(room=stage, actor=services.SYSTEM)
    assert post(api(ann_token), "stage", body="hi").status_code == 403


def test_a_ban_hides_the_room(lobby, make_user, ann, ann_token):
    boss = Singer(user=make_user("boss", is_staff=True, is_superuser=True), name="boss")
    services.user_ban(room=lobby, actor=boss, user=ann)
    assert post(api(ann_token), body="hi").status_code == 404


def test_slow_mode_is_429_with_retry_after(lobby, make_user, ann_token):
    boss = Singer(user=make_user("boss", is_staff=True, is_superuser=True), name="boss")
    services.room_set_slow_mode(room=lobby, actor=boss, seconds=30)
    assert post(api(ann_token), body="one").status_code == 201
    slowed = post(api(ann_token), body="two")
    assert slowed.status_code == 429 and slowed.json()["code"] == "rate_limited"
    assert 1 <= int(slowed["Retry-After"]) <= 30 and "slow mode" in slowed.json()["detail"]


def test_the_rate_limit_is_429_with_retry_after(lobby, ann_token, settings):
    settings.CHOIR_RATE_PER_SECOND = 0.5
    settings.CHOIR_RATE_BURST = 2
    client = api(ann_token)
    assert [post(client, body=f"m{i}").status_code for i in range(2)] == [201, 201]
    limited = post(client, body="m3")
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert int(limited["Retry-After"]) >= 1 and limited.json()["retry_after"] > 0


async def test_http_and_the_socket_draw_on_one_budget_per_person(lobby, ann, ann_token, settings):
    settings.CHOIR_RATE_PER_SECOND = 0.01
    settings.CHOIR_RATE_BURST = 3
    sock = await connect("lobby", user=ann)
    await sock.say("s1", client_id="s1")
    await sock.say("s2", client_id="s2")
    assert [(await sock.expect("message"))["client_id"] for _ in range(2)] == ["s1", "s2"]
    client = api(ann_token)
    assert (await database_sync_to_async(post)(client, body="h1")).status_code == 201
    assert (await database_sync_to_async(post)(client, body="h2")).status_code == 429
    await sock.expect("message")  # h1, broadcast
    await sock.say("s3", client_id="s3")
    error = await sock.expect("error")
    assert error["code"] == "rate_limited" and error["ref"] == "s3"
    await sock.close()


def test_storage_failure_is_503_and_stores_nothing(lobby, ann_token, monkeypatch):
    def fail(*args, **kwargs):
        raise DatabaseError("disk on fire")

    monkeypatch.setattr(Message.objects, "insert_returning_ids", fail)
    response = post(api(ann_token), body="hi", client_id="x1")
    assert response.status_code == 503 and response.json()["code"] == "unavailable"
    monkeypatch.undo()
    assert post(api(ann_token), body="hi", client_id="x1").status_code == 201


def test_edit_and_delete_over_http_for_the_author_and_conductors_only(lobby, make_user, ann, ann_token):
    bob = make_user("bob")
    bob_token = services.token_issue(actor=services.SYSTEM, user=bob, name="b")[1]
    assert post(api(ann_token), body="first", client_id="a1").status_code == 201
    patch = lambda token, seq, body: api(token).patch(  # noqa: E731
        f"/api/rooms/lobby/messages/{seq}", json.dumps({"body": body}), content_type="application/json"
    )
    edited = patch(ann_token, 1, "first, fixed")
    assert edited.status_code == 200 and edited.json()["body"] == "first, fixed" and edited.json()["edited_at"]
    assert patch(bob_token, 1, "hijack").status_code == 403
    assert patch(ann_token, 9, "x").status_code == 404
    assert patch(ann_token, 1, "").status_code == 400
    assert api(bob_token).delete("/api/rooms/lobby/messages/1").status_code == 403
    services.membership_set(room=lobby, actor=services.SYSTEM, user=bob, role="conductor")
    deleted = api(bob_token).delete("/api/rooms/lobby/messages/1")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True and deleted.json()["body"] == ""
    assert api(ann_token).delete("/api/rooms/lobby/messages/1").status_code == 404
    assert api(ann_token).put("/api/rooms/lobby/messages/1").status_code == 405


async def test_an_edit_over_http_reaches_the_sockets(lobby, ann_token):
    assert (await database_sync_to_async(post)(api(ann_token), body="typo", client_id="t")).status_code == 201
    sock = await connect("lobby")
    response = await database_sync_to_async(api(ann_token).patch)(
        "/api/rooms/lobby/messages/1", json.dumps({"body": "fixed"}), content_type="application/json"
    )
    assert response.status_code == 200
    frame = await sock.expect("edited")
    assert frame["seq"] == 1 and frame["body"] == "fixed"
    await sock.close()
