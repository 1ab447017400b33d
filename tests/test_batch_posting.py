"""Posting in batches (group commit) keeps every rule of posting one by one."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from choir import services
from choir.access import Singer
from choir.runtime import current_writer
from choir.models import Message, Room
from choir.protocol import Refusal
from choir.services import Draft, Posted
from choir.writer import settled

pytestmark = pytest.mark.django_db(transaction=True)

ann = Singer(user=None, name="ann", guest_key="a")
bo = Singer(user=None, name="bo", guest_key="b")


def test_a_batch_takes_consecutive_seqs_in_order(lobby):
    outcomes = services.messages_post(room=lobby, drafts=[Draft(ann, f"m{i}", f"c{i}") for i in range(5)])
    assert [o.message.seq for o in outcomes] == [1, 2, 3, 4, 5]
    assert list(Message.objects.order_by("seq").values_list("body", flat=True)) == [f"m{i}" for i in range(5)]


def test_refused_drafts_leave_no_gap(lobby, make_user):
    boss = make_user("boss", is_staff=True, is_superuser=True)
    muted = make_user("muted")
    services.user_mute(room=lobby, actor=Singer(user=boss, name="boss"), user=muted, minutes=5)
    drafts = [Draft(ann, "one"), Draft(Singer(user=muted, name="muted"), "shh"), Draft(bo, ""), Draft(bo, "two")]
    outcomes = services.messages_post(room=lobby, drafts=drafts)
    assert isinstance(outcomes[1], Refusal) and outcomes[1].code == "forbidden"
    assert isinstance(outcomes[2], Refusal) and outcomes[2].code == "invalid"
    assert [outcomes[0].message.seq, outcomes[3].message.seq] == [1, 2]
    lobby.refresh_from_db()
    assert lobby.last_seq == 2
    assert services.message_post(room=lobby, singer=ann, body="three").message.seq == 3


def test_the_same_client_id_twice_in_one_batch_is_stored_once(lobby):
    outcomes = services.messages_post(room=lobby, drafts=[Draft(ann, "hi", "same"), Draft(ann, "hi", "same")])
    assert outcomes[0].created and not outcomes[1].created
    assert outcomes[0].message.seq == outcomes[1].message.seq == 1
    assert Message.objects.count() == 1


def test_a_retry_in_a_batch_answers_with_the_original(lobby):
    first = services.message_post(room=lobby, singer=ann, body="hi", client_id="x")
    outcomes = services.messages_post(room=lobby, drafts=[Draft(bo, "new"), Draft(ann, "hi", "x")])
    assert outcomes[1].message.pk == first.message.pk
    assert outcomes[1].created is False
    assert outcomes[0].message.seq == 2


def test_slow_mode_holds_within_one_batch(lobby, make_user):
    boss = make_user("boss", is_staff=True, is_superuser=True)
    user = make_user("sam")
    services.room_set_slow_mode(room=lobby, actor=Singer(user=boss, name="boss"), seconds=30)
    sam = Singer(user=user, name="sam")
    outcomes = services.messages_post(room=lobby, drafts=[Draft(sam, "a"), Draft(sam, "b")])
    assert isinstance(outcomes[0], Posted)
    assert isinstance(outcomes[1], Refusal) and outcomes[1].code == "rate_limited"


def test_one_batch_serves_several_rooms_each_in_its_own_order(lobby, make_room):
    hall = make_room("hall", guests_may_post=True)
    shut = make_room("shut", guests_may_post=True, status=Room.Status.ARCHIVED)
    items = [(lobby, Draft(ann, "l1")), (hall, Draft(bo, "h1")), (shut, Draft(bo, "x")), (lobby, Draft(bo, "l2"))]
    outcomes = services.messages_post_many(items=items)
    assert [(o.message.room.slug, o.message.seq) for o in (outcomes[0], outcomes[1], outcomes[3])] == [
        ("lobby", 1), ("hall", 1), ("lobby", 2)
    ]
    assert isinstance(outcomes[2], Refusal) and outcomes[2].code == "forbidden"


def test_a_closed_room_refuses_the_whole_batch(lobby):
    services.room_archive(room=lobby, actor=services.SYSTEM)
    outcomes = services.messages_post(room=lobby, drafts=[Draft(ann, "a"), Draft(bo, "b")])
    assert all(isinstance(o, Refusal) and o.code == "forbidden" for o in outcomes)
    assert Room.objects.get(pk=lobby.pk).last_seq == 0


async def test_the_writer_gathers_posts_that_arrive_together(lobby, monkeypatch):
    batches = []
    real = services.messages_post_many

    def spy(**kwargs):
        batches.append(len(kwargs["items"]))
        return real(**kwargs)

    monkeypatch.setattr(services, "messages_post_many", spy)
    writer = current_writer()
    posted = await asyncio.gather(*(settled(writer.submit(lobby, Draft(ann, f"n{i}"))) for i in range(30)))
    assert sorted(p.message.seq for p in posted) == list(range(1, 31))
    assert sum(batches) == 30 and len(batches) < 30
    rows = await database_sync_to_async(lambda: list(Message.objects.order_by("seq").values_list("body", flat=True)))()
    assert len(rows) == 30
