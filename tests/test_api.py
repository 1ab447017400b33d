"""The history API: pages, edges, and the same visibility as the socket."""

import pytest
from django.test import Client

from choir import services
from choir.access import Singer

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(lobby):
    singer = Singer(user=None, name="ann", guest_key="a")
    for i in range(1, 26):
        services.message_post(room=lobby, singer=singer, body=f"m{i}", client_id=f"c{i}")
    return lobby


def seqs(response):
    return [m["seq"] for m in response.json()["messages"]]


def test_it_lists_the_rooms_the_caller_may_see(lobby, make_room, make_user):
    make_room("secret", is_public=False)
    client = Client()
    assert [r["slug"] for r in client.get("/api/rooms/").json()["rooms"]] == ["lobby"]
    member = make_user("mia")
    services.membership_set(room=make_room("club", is_public=False), actor=services.SYSTEM, user=member, role="member")
    client.force_login(member)
    assert {r["slug"] for r in client.get("/api/rooms/").json()["rooms"]} == {"lobby", "club"}


def test_without_a_cursor_it_returns_the_latest_page_newest_last(history, settings):
    settings.CHOIR_HISTORY_PAGE_MAX = 10
    body = Client().get("/api/rooms/lobby/messages").json()
    assert [m["seq"] for m in body["messages"]] == list(range(16, 26))
    assert body["has_more"] is True and body["seq"] == 25


def test_before_pages_backwards_without_overlap_to_the_start(history):
    client = Client()
    pages, before = [], 26
    while True:
        body = client.get(f"/api/rooms/lobby/messages?before={before}&limit=7").json()
        page = [m["seq"] for m in body["messages"]]
        pages.append(page)
        if not body["has_more"]:
            break
        before = page[0]
    assert [seq for page in reversed(pages) for seq in page] == list(range(1, 26))
    assert pages[-1] == [1, 2, 3, 4]


def test_after_pages_forwards_and_ends_empty(history):
    client = Client()
    assert seqs(client.get("/api/rooms/lobby/messages?after=20&limit=3")) == [21, 22, 23]
    assert seqs(client.get("/api/rooms/lobby/messages?after=23&limit=3")) == [24, 25]
    body = client.get("/api/rooms/lobby/messages?after=25").json()
    assert body["messages"] == [] and body["has_more"] is False
    assert seqs(client.get("/api/rooms/lobby/messages?before=1")) == []


def test_limit_is_capped_by_the_server(history, settings):
    settings.CHOIR_HISTORY_PAGE_MAX = 5
    body = Client().get("/api/rooms/lobby/messages?after=0&limit=1000").json()
    assert seqs_from(body) == [1, 2, 3, 4, 5] and body["limit"] == 5


def seqs_from(body):
    return [m["seq"] for m in body["messages"]]


def test_messages_have_the_same_shape_as_the_socket_frame(history):
    message = Client().get("/api/rooms/lobby/messages?after=0&limit=1").json()["messages"][0]
    assert message == {
        "type": "message", "seq": 1, "id": message["id"], "room": "lobby", "author": "ann", "body": "m1",
        "sent_at": message["sent_at"], "client_id": "c1", "edited_at": None, "deleted": False,
        "reply_to": None, "reactions": {}, "mentions": [],
    }


@pytest.mark.parametrize("query", ["before=x", "after=-1", "limit=abc", "before=3&after=1", "after=1.5"])
def test_bad_parameters_are_a_400_with_a_reason(history, query):
    response = Client().get(f"/api/rooms/lobby/messages?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_private_rooms_are_hidden_from_outsiders_and_open_to_members(make_room, make_user):
    room = make_room("secret", is_public=False)
    services.announce(room=room, text="members only", actor=services.SYSTEM)
    assert Client().get("/api/rooms/secret/messages").status_code == 404
    outsider = Client()
    outsider.force_login(make_user("eve"))
    assert outsider.get("/api/rooms/secret/messages").status_code == 404
    member = make_user("mia")
    services.membership_set(room=room, actor=services.SYSTEM, user=member, role="member")
    inside = Client()
    inside.force_login(member)
    assert seqs(inside.get("/api/rooms/secret/messages")) == [1]


def test_a_banned_user_cannot_read_history(history, make_user):
    boss = make_user("boss", is_staff=True, is_superuser=True)
    troll = make_user("troll")
    services.user_ban(room=history, actor=Singer(user=boss, name="boss"), user=troll)
    client = Client()
    client.force_login(troll)
    assert client.get("/api/rooms/lobby/messages").status_code == 404


def test_unknown_rooms_are_404(db):
    assert Client().get("/api/rooms/nope/messages").status_code == 404


def test_a_banned_user_does_not_see_the_room_listed(history, make_room, make_user):
    boss = make_user("boss", is_staff=True, is_superuser=True)
    troll = make_user("troll")
    make_room("other", guests_may_post=True)
    services.user_ban(room=history, actor=Singer(user=boss, name="boss"), user=troll)
    client = Client()
    client.force_login(troll)
    assert [r["slug"] for r in client.get("/api/rooms/").json()["rooms"]] == ["other"]
