"""Each guarantee of the protocol page, through the real ASGI stack.

These run on whichever layer the pass configures: in-memory in pass 1, Redis
pub/sub with PostgreSQL in pass 2.
"""

import asyncio

import pytest
from channels.db import database_sync_to_async

from choir import services
from choir.access import Singer
from choir.models import Message, Room
from tests.support import connect

pytestmark = pytest.mark.django_db(transaction=True)


async def test_messages_are_numbered_in_order_and_everyone_sees_that_order(lobby):
    """Ordered: seqs 1..N, no gaps, no duplicates, same order everywhere."""
    a, b, c = [await connect("lobby") for _ in range(3)]
    for i in range(10):
        await (a, b)[i % 2].say(f"note {i}")
    for sock in (a, b, c):
        seqs = [(await sock.expect("message"))["seq"] for _ in range(10)]
        assert seqs == list(range(1, 11))
    rows = await database_sync_to_async(lambda: list(Message.objects.values_list("seq", "body").order_by("seq")))()
    assert [seq for seq, _ in rows] == list(range(1, 11))
    for sock in (a, b, c):
        await sock.close()


async def test_a_message_is_stored_before_anyone_is_told(lobby):
    listener = await connect("lobby")
    sender = await connect("lobby")
    await sender.say("stored first")
    frame = await listener.expect("message")
    stored = await database_sync_to_async(Message.objects.filter(room=lobby, seq=frame["seq"]).first)()
    assert stored is not None and stored.body == "stored first"
    await listener.close()
    await sender.close()


async def test_the_sender_is_acknowledged_with_its_own_message_frame(lobby):
    sock = await connect("lobby")
    await sock.say("hello", client_id="abc-1")
    ack = await sock.expect("message")
    assert ack["client_id"] == "abc-1"
    assert ack["seq"] == 1
    assert set(ack) >= {"seq", "id", "room", "author", "body", "sent_at", "client_id"}
    assert ack["sent_at"].endswith("Z")
    await sock.close()


async def test_a_retry_with_the_same_client_id_stores_nothing_new(lobby):
    """Idempotent: the sender gets the original frame again; others hear it once."""
    listener = await connect("lobby")
    sender = await connect("lobby")
    await sender.say("once", client_id="retry-me")
    first = await sender.expect("message")
    await sender.say("once", client_id="retry-me")
    again = await sender.expect("message")
    assert again == first
    assert (await listener.expect("message"))["seq"] == first["seq"]
    await listener.nothing()
    assert await database_sync_to_async(Message.objects.count)() == 1
    await listener.close()
    await sender.close()


async def test_the_same_client_id_from_another_user_is_a_new_message(lobby, make_user):
    alice, bob = await database_sync_to_async(make_user)("alice"), await database_sync_to_async(make_user)("bob")
    a = await connect("lobby", user=alice)
    b = await connect("lobby", user=bob)
    await a.say("from alice", client_id="same")
    await b.say("from bob", client_id="same")
    seqs = {(await a.expect("message"))["seq"], (await a.expect("message"))["seq"]}
    assert seqs == {1, 2}
    await a.close()
    await b.close()


async def test_resuming_after_n_replays_everything_later_exactly_once_then_synced(lobby):
    sender = await connect("lobby")
    for i in range(5):
        await sender.say(f"m{i}")
    for _ in range(5):
        await sender.expect("message")
    resumed = await connect("lobby", query="after=2")
    replayed = [(await resumed.expect("message"))["seq"] for _ in range(3)]
    assert replayed == [3, 4, 5]
    assert (await resumed.expect("synced"))["seq"] == 5
    await sender.say("live")
    assert (await resumed.expect("message"))["seq"] == 6
    await resumed.nothing()
    await sender.close()
    await resumed.close()


async def test_messages_posted_during_the_replay_are_not_missed_or_doubled(lobby):
    """The window between reading history and going live loses nothing."""
    singer = Singer(user=None, name="writer", guest_key="w")
    for i in range(30):
        await database_sync_to_async(services.message_post)(room=lobby, singer=singer, body=f"old {i}")

    async def keep_posting():
        for i in range(30):
            await database_sync_to_async(services.message_post)(room=lobby, singer=singer, body=f"new {i}")
            await asyncio.sleep(0)

    writer = asyncio.ensure_future(keep_posting())
    resumed = await connect("lobby", query="after=0")
    await writer
    seen = []
    while len(seen) < 60:
        frame = await resumed.recv()
        if frame["type"] == "message":
            seen.append(frame["seq"])
    assert seen == list(range(1, 61))
    await resumed.nothing()
    await resumed.close()


async def test_more_missed_than_the_replay_limit_is_truncated(lobby, settings):
    settings.CHOIR_REPLAY_LIMIT = 3
    singer = Singer(user=None, name="writer", guest_key="w")
    for i in range(10):
        await database_sync_to_async(services.message_post)(room=lobby, singer=singer, body=f"m{i}")
    resumed = await connect("lobby", query="after=2")
    truncated = await resumed.expect("truncated")
    assert (truncated["from"], truncated["to"]) == (3, 7)
    assert [(await resumed.expect("message"))["seq"] for _ in range(3)] == [8, 9, 10]
    assert (await resumed.expect("synced"))["seq"] == 10
    await resumed.close()


async def test_a_bad_after_is_refused_but_the_socket_stays(lobby):
    sock = await connect("lobby", query="after=banana")
    error = await sock.expect("error")
    assert error["code"] == "invalid"
    await sock.say("still here")
    assert (await sock.expect("message"))["body"] == "still here"
    await sock.close()


@pytest.mark.parametrize(
    "frame, code",
    [
        ({"type": "say", "body": ""}, "invalid"),
        ({"type": "say", "body": "   "}, "invalid"),
        ({"type": "say"}, "invalid"),
        ({"type": "say", "body": 42}, "invalid"),
        ({"type": "say", "body": "x", "client_id": "x" * 65}, "invalid"),
        ({"type": "edit", "seq": "one", "body": "x"}, "invalid"),
        ({"body": "no type"}, "invalid"),
        ({"type": "sing"}, "unknown_type"),
        ({"type": "edit", "seq": 999, "body": "x"}, "not_found"),
        ({"type": "delete", "seq": 999}, "not_found"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_open(lobby, frame, code):
    sock = await connect("lobby")
    await sock.send(frame)
    error = await sock.expect("error")
    assert error["code"] == code
    assert error["detail"]
    await sock.send({"type": "ping"})
    await sock.expect("pong")
    await sock.close()


async def test_an_over_long_body_is_invalid_and_carries_the_client_id_as_ref(lobby, settings):
    settings.CHOIR_MAX_BODY_CHARS = 10
    sock = await connect("lobby")
    await sock.say("x" * 11, client_id="long-1")
    error = await sock.expect("error")
    assert (error["code"], error["ref"]) == ("invalid", "long-1")
    await sock.close()


async def test_binary_frames_get_an_error(lobby):
    sock = await connect("lobby")
    await sock.comm.send_to(bytes_data=b"\x00\x01binary")
    assert (await sock.expect("error"))["code"] == "invalid"
    await sock.close()


async def test_a_guest_where_guests_may_not_post_is_forbidden_and_stays(make_room):
    await database_sync_to_async(make_room)("members-only", guests_may_post=False)
    sock = await connect("members-only", hello=False)
    hello = await sock.expect("hello")
    assert hello["you"]["can_post"] is False
    await sock.say("let me in", client_id="g1")
    error = await sock.expect("error")
    assert (error["code"], error["ref"]) == ("forbidden", "g1")
    await sock.send({"type": "ping"})
    await sock.expect("pong")
    await sock.close()


async def test_flooding_is_rate_limited_with_retry_after_then_closed_with_4429(lobby, settings):
    settings.CHOIR_RATE_PER_SECOND = 0.5
    settings.CHOIR_RATE_BURST = 2
    settings.CHOIR_FLOOD_STRIKES = 3
    sock = await connect("lobby")
    for i in range(2):
        await sock.say(f"ok {i}")
        await sock.expect("message")
    await sock.say("too fast")
    limited = await sock.expect("error")
    assert limited["code"] == "rate_limited"
    assert limited["retry_after"] > 0
    await sock.say("again")
    await sock.expect("error")
    await sock.say("and again")
    closing = await sock.expect("closing")
    assert closing["code"] == 4429
    assert await sock.closed() == 4429


async def test_a_storage_failure_is_unavailable_and_the_retry_succeeds_once(lobby, monkeypatch):
    sock = await connect("lobby")
    real = Room.objects.allocate_seqs

    def broken(*args, **kwargs):
        from django.db import OperationalError

        raise OperationalError("database is down")

    monkeypatch.setattr(Room.objects, "allocate_seqs", broken)
    await sock.say("important", client_id="imp-1")
    error = await sock.expect("error")
    assert (error["code"], error["ref"]) == ("unavailable", "imp-1")
    assert await database_sync_to_async(Message.objects.count)() == 0
    monkeypatch.setattr(Room.objects, "allocate_seqs", real)
    await sock.say("important", client_id="imp-1")
    assert (await sock.expect("message"))["seq"] == 1
    await sock.say("important", client_id="imp-1")
    assert (await sock.expect("message"))["seq"] == 1
    assert await database_sync_to_async(Message.objects.count)() == 1
    await sock.close()


async def test_no_such_room_closes_with_4404(db):
    sock = await connect("nowhere", hello=False)
    closing = await sock.expect("closing")
    assert closing["code"] == 4404
    assert await sock.closed() == 4404


async def test_a_private_room_closes_for_outsiders_exactly_like_a_missing_room(make_room, make_user):
    """4404 and the same words, so nobody can probe which private rooms exist (4403 is for bans)."""
    await database_sync_to_async(make_room)("secret", is_public=False)
    outsider = await database_sync_to_async(make_user)("eve")
    for user in (None, outsider):
        answers = []
        for slug in ("secret", "no-such-room"):
            sock = await connect(slug, user=user, hello=False)
            closing = await sock.expect("closing")
            assert await sock.closed() == 4404
            answers.append((closing["code"], closing["reason"]))
        assert answers[0] == answers[1] == (4404, "no such room")


async def test_a_member_may_enter_a_private_room(make_room, make_user):
    room = await database_sync_to_async(make_room)("secret", is_public=False)
    member = await database_sync_to_async(make_user)("mia")
    await database_sync_to_async(services.membership_set)(room=room, actor=services.SYSTEM, user=member, role="member")
    sock = await connect("secret", user=member)
    await sock.say("inside")
    assert (await sock.expect("message"))["author"] == "mia"
    await sock.close()


async def test_an_archived_room_closes_with_4410(make_room):
    await database_sync_to_async(make_room)("old", status=Room.Status.ARCHIVED)
    sock = await connect("old", hello=False)
    assert (await sock.expect("closing"))["code"] == 4410
    assert await sock.closed() == 4410


async def test_archiving_closes_open_sockets_with_closing_and_4410(lobby):
    sock = await connect("lobby")
    await database_sync_to_async(services.room_archive)(room=lobby, actor=services.SYSTEM)
    closing = await sock.expect("closing")
    assert closing["code"] == 4410 and closing["reason"]
    assert await sock.closed() == 4410


async def test_the_author_can_edit_and_delete_and_everyone_hears(lobby, make_user):
    alice = await database_sync_to_async(make_user)("alice")
    author = await connect("lobby", user=alice)
    other = await connect("lobby")
    await author.say("draft")
    seq = (await author.expect("message"))["seq"]
    await other.expect("message")
    await author.send({"type": "edit", "seq": seq, "body": "final"})
    for sock in (author, other):
        edited = await sock.expect("edited")
        assert (edited["seq"], edited["body"]) == (seq, "final")
    await author.send({"type": "delete", "seq": seq})
    for sock in (author, other):
        assert (await sock.expect("deleted"))["seq"] == seq
    message = await database_sync_to_async(Message.objects.get)(room=lobby, seq=seq)
    assert message.deleted_at is not None and message.body == ""
    await author.close()
    await other.close()


async def test_others_cannot_edit_or_delete_a_message(lobby, make_user):
    alice, bob = await database_sync_to_async(make_user)("alice"), await database_sync_to_async(make_user)("bob")
    a = await connect("lobby", user=alice)
    b = await connect("lobby", user=bob)
    await a.say("mine")
    seq = (await a.expect("message"))["seq"]
    await b.send({"type": "edit", "seq": seq, "body": "yours now"})
    assert (await b.expect("error", skip=("presence", "message")))["code"] == "forbidden"
    await b.send({"type": "delete", "seq": seq})
    assert (await b.expect("error", skip=("presence", "message")))["code"] == "forbidden"
    guest = await connect("lobby")
    await guest.send({"type": "delete", "seq": seq})
    assert (await guest.expect("error"))["code"] == "forbidden"
    for sock in (a, b, guest):
        await sock.close()


async def test_typing_reaches_others_not_the_typist_and_is_throttled(lobby, settings):
    settings.CHOIR_TYPING_INTERVAL = 60
    typist = await connect("lobby")
    other = await connect("lobby")
    await typist.send({"type": "typing"})
    await typist.send({"type": "typing"})
    frame = await other.expect("typing", skip=("presence",))
    assert frame["author"]
    await other.nothing()
    await typist.nothing()
    await typist.close()
    await other.close()


async def test_presence_announces_joins_and_leaves_with_the_online_count(lobby):
    first = await connect("lobby", query="name=Ann")
    second = await connect("lobby", query="name=Bo", hello=False)
    hello = await second.expect("hello")
    assert set(hello["online"]) >= {"Ann (guest)", "Bo (guest)"}
    joined = await first.expect("presence", skip=())
    assert "Bo (guest)" in joined["joined"]
    await second.close()
    left = await first.expect("presence", skip=())
    assert left["left"] == ["Bo (guest)"]
    assert left["online"] == 1
    await first.close()


async def test_a_crowd_gets_presence_summed_up_with_counts_and_a_few_names(lobby, settings):
    # Past CHOIR_PRESENCE_CROWD online, arrivals are not passed on batch by
    # batch: each socket gets one frame per CROWD_EVERY, naming a few and counting all.
    settings.CHOIR_PRESENCE_CROWD = 2
    settings.CHOIR_PRESENCE_CROWD_EVERY = 1.0
    settings.CHOIR_PRESENCE_NAMES_MAX = 2
    first = await connect("lobby", query="name=Ann")
    second = await connect("lobby", query="name=Bo")
    small = await first.expect("presence", skip=())
    assert "Bo (guest)" in small["joined"] and "joined_count" not in small
    crowd = [await connect("lobby", query=f"name=C{i}") for i in range(4)]
    summed = await first.expect("presence", skip=(), timeout=5)
    assert summed["joined_count"] == 4 and summed["left_count"] == 0
    assert len(summed["joined"]) == 2 and set(summed["joined"]) <= {f"C{i} (guest)" for i in range(4)}
    assert summed["online"] == 6
    await first.nothing(timeout=0.5, skip=())  # one frame for the lot, not one per batch
    for sock in crowd:
        await sock.close()
    gone = await first.expect("presence", skip=(), timeout=5)
    assert gone["left_count"] == 4 and gone["online"] == 2
    await second.close()
    await first.close()


async def test_a_failed_presence_read_keeps_the_online_view_instead_of_emptying_it(lobby, monkeypatch):
    # The whole-room read only heals the view; if the store does not answer,
    # the hello must still list who is here, not an empty room.
    from choir.fanout import current_hub
    from choir.fanout.batching import PresenceBatcher

    first = await connect("lobby", query="name=Ann")
    second = await connect("lobby", query="name=Bo")
    hub = current_hub()

    async def no_answer(room_id):
        return None

    feed = next(iter(hub.feeds.values()))
    feed.roster.add(["Zed (elsewhere)"])  # as heard from another process's batch
    monkeypatch.setattr(hub.presence.store, "names", no_answer)
    monkeypatch.setattr(PresenceBatcher, "ONLINE_CACHE", 0.0)  # read the store at every hello
    third = await connect("lobby", query="name=Cy", hello=False)
    hello = await third.expect("hello")
    assert {"Ann (guest)", "Bo (guest)", "Cy (guest)", "Zed (elsewhere)"} <= set(hello["online"])
    assert hello["online_count"] == 4
    for sock in (first, second, third):
        await sock.close()


async def test_a_handshake_while_the_database_is_down_closes_with_1013_and_a_reason(lobby, make_user, monkeypatch):
    from django.db import OperationalError

    from choir import entry

    user = await database_sync_to_async(make_user)("alice")

    def down(*args, **kwargs):
        raise OperationalError("database is down")

    monkeypatch.setattr(entry, "enter", down)
    sock = await connect("lobby", user=user, hello=False)
    closing = await sock.expect("closing")
    assert closing["code"] == 1013 and "unavailable" in closing["reason"]
    assert await sock.closed() == 1013


async def test_a_socket_sending_without_waiting_gets_every_post_stored_in_its_order(lobby):
    # A socket's posts are stored in the background, in the order they came,
    # while it goes on reading: a burst is neither reordered nor lost, and a
    # retry inside the burst still gets its original.
    sock = await connect("lobby")
    listener = await connect("lobby")
    for i in range(40):
        await sock.say(f"burst {i}", client_id=f"burst-{i}")
    await sock.say("burst 3 again", client_id="burst-3")
    seqs = [(await sock.expect("message"))["seq"] for _ in range(41)]
    # Seq 4 twice (its broadcast and the retry's answer, the same frame), the rest once, in order.
    assert seqs.count(4) == 2
    assert [seq for seq in seqs if seq != 4] == [seq for seq in range(1, 41) if seq != 4]
    heard = [await listener.expect("message") for _ in range(40)]
    assert [(m["seq"], m["body"]) for m in heard] == [(i + 1, f"burst {i}") for i in range(40)]
    await listener.nothing()
    await sock.close()
    await listener.close()


async def test_a_socket_keeps_reading_while_its_post_is_being_stored(lobby, monkeypatch):
    import threading

    release = threading.Event()
    real = services.messages_post_many

    def slow_store(**kwargs):
        release.wait(10)
        return real(**kwargs)

    monkeypatch.setattr(services, "messages_post_many", slow_store)
    sock = await connect("lobby")
    await sock.say("a slow store", client_id="slow-1")
    await sock.send({"type": "ping"})
    await sock.expect("pong")  # answered while the post is still being stored
    release.set()
    ack = await sock.expect("message")
    assert (ack["seq"], ack["client_id"]) == (1, "slow-1")
    await sock.close()
