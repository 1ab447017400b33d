"""Signals for other Django code: each sent once, after commit, with its documented arguments."""

import logging

import pytest
from django.db import transaction

from choir import services, signals
from choir.access import Singer
from choir.models import Message, Room, Sanction

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def heard():
    """Connect a recorder to every Choir signal; yields {signal name: [kwargs, …]}."""
    calls: dict[str, list[dict]] = {}
    receivers = {}
    names = ["message_posted", "message_changed", "message_deleted", "member_sanctioned", "room_opened", "room_changed", "room_archived"]
    for name in names:
        def receiver(sender, signal, _name=name, **kwargs):
            calls.setdefault(_name, []).append({"sender": sender, **kwargs})
        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    yield calls
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


@pytest.fixture
def boss(make_user):
    user = make_user("boss", is_staff=True, is_superuser=True)
    return Singer(user=user, name="boss")


def after_commit(heard, name, change):
    """Run `change` in a transaction: nothing heard until it commits, then exactly one call."""
    with transaction.atomic():
        result = change()
        assert name not in heard, f"{name} sent before commit"
    assert len(heard.get(name, [])) == 1, heard.get(name)
    return result, heard[name][0]


def test_message_posted(lobby, heard):
    singer = Singer(user=None, name="ann", guest_key="a")
    posted, call = after_commit(heard, "message_posted", lambda: services.message_post(room=lobby, singer=singer, body="hi"))
    assert call["sender"] is Message and call["room"] == lobby and call["message"] == posted.message
    assert call["message"].seq == 1 and call["message"].body == "hi"


def test_message_posted_is_not_sent_for_a_retry_or_a_rollback(lobby, heard):
    singer = Singer(user=None, name="ann", guest_key="a")
    services.message_post(room=lobby, singer=singer, body="hi", client_id="c1")
    services.message_post(room=lobby, singer=singer, body="hi", client_id="c1")
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            services.message_post(room=lobby, singer=singer, body="lost")
            raise RuntimeError("roll back")
    assert len(heard["message_posted"]) == 1


def test_message_changed(lobby, heard, make_user):
    ann = make_user("ann")
    singer = Singer(user=ann, name="ann")
    services.message_post(room=lobby, singer=singer, body="typo")
    message, call = after_commit(
        heard, "message_changed", lambda: services.message_edit(room=lobby, actor=singer, seq=1, body="fixed")
    )
    assert call["sender"] is Message and call["room"] == lobby and call["actor"] == singer
    assert call["message"].body == "fixed" and call["message"].edited_at is not None


def test_message_deleted(lobby, heard, make_user):
    singer = Singer(user=make_user("ann"), name="ann")
    services.message_post(room=lobby, singer=singer, body="oops")
    _, call = after_commit(heard, "message_deleted", lambda: services.message_delete(room=lobby, actor=singer, seq=1))
    assert call["sender"] is Message and call["message"].seq == 1 and call["message"].deleted_at is not None
    assert call["actor"] == singer and call["room"] == lobby


@pytest.mark.parametrize("kind", ["mute", "ban"])
def test_member_sanctioned(lobby, heard, boss, make_user, kind):
    sam = make_user("sam")
    if kind == "mute":
        change = lambda: services.user_mute(room=lobby, actor=boss, user=sam, minutes=5, reason="calm down")  # noqa: E731
    else:
        change = lambda: services.user_ban(room=lobby, actor=boss, user=sam, reason="spam")  # noqa: E731
    sanction, call = after_commit(heard, "member_sanctioned", change)
    assert call["sender"] is Sanction and call["sanction"] == sanction and call["sanction"].kind == kind
    assert call["user"] == sam and call["actor"] == boss and call["room"] == lobby


def test_room_opened_on_create_and_on_reopen(db, heard, boss):
    room, call = after_commit(heard, "room_opened", lambda: services.room_create(slug="hall", title="Hall", actor=boss))
    assert call["sender"] is Room and call["room"] == room and call["reopened"] is False and call["actor"] == boss
    services.room_archive(room=room, actor=boss)
    heard.pop("room_opened")
    _, call = after_commit(heard, "room_opened", lambda: services.room_reopen(room=room, actor=boss))
    assert call["reopened"] is True


def test_room_changed(lobby, heard, boss):
    lobby.topic = "new topic"
    _, call = after_commit(heard, "room_changed", lambda: services.room_save(room=lobby, actor=boss, changed=["topic"]))
    assert call["sender"] is Room and call["changed"] == ["topic"] and call["room"].topic == "new topic"
    heard.pop("room_changed")
    _, call = after_commit(heard, "room_changed", lambda: services.room_set_slow_mode(room=lobby, actor=boss, seconds=10))
    assert call["changed"] == ["slow_mode_seconds"] and call["room"].slow_mode_seconds == 10


def test_room_archived(lobby, heard, boss):
    _, call = after_commit(heard, "room_archived", lambda: services.room_archive(room=lobby, actor=boss, reason="done"))
    assert call["sender"] is Room and call["room"] == lobby and call["reason"] == "done" and call["actor"] == boss


def test_a_failing_receiver_neither_undoes_the_change_nor_silences_the_others(lobby, heard):
    def broken(sender, **kwargs):
        raise ValueError("receiver bug")

    logged = []
    handler = logging.Handler()
    handler.emit = logged.append
    logging.getLogger("django.dispatch").addHandler(handler)
    signals.message_posted.connect(broken)
    try:
        services.message_post(room=lobby, singer=Singer(user=None, name="ann", guest_key="a"), body="hi")
    finally:
        signals.message_posted.disconnect(broken)
        logging.getLogger("django.dispatch").removeHandler(handler)
    assert Message.objects.count() == 1 and len(heard["message_posted"]) == 1
    assert any("receiver bug" in record.getMessage() for record in logged)
