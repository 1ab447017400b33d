"""Protocol v1.1 conversations: revisions and resume, replies, reactions,
mentions, read markers, unread counts, search and context.

Through the real ASGI stack, on whichever layer the pass configures
(in-memory + SQLite in pass 1, Redis + PostgreSQL in pass 2).
"""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from choir import protocol, services
from choir.access import Singer
from choir.models import Mention, Message, Reaction, Room
from choir.protocol import Refusal
from tests.support import connect

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


def singer(user):
    return Singer(user=user, name=user.username)


def post(room, user, body, **kwargs):
    return services.message_post(room=room, singer=singer(user), body=body, **kwargs).message


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def people(make_user):
    return {name: make_user(name) for name in ("ann", "bob", "mod")}


# Revisions and resume ------------------------------------------------------


async def test_every_change_takes_the_next_rev_and_frames_carry_it(lobby, people):
    ann, bob = people["ann"], people["bob"]
    watcher = await connect("lobby")
    for i in range(3):
        await db(post)(lobby, ann, f"m{i}")
    for _ in range(3):
        await watcher.expect("message")
    await db(services.message_edit)(room=lobby, actor=singer(ann), seq=1, body="m0 fixed")
    await db(services.reaction_toggle)(room=lobby, actor=singer(bob), seq=2, emoji="👍", on=True)
    await db(services.message_delete)(room=lobby, actor=singer(ann), seq=3)
    frames = [await watcher.expect(kind) for kind in ("edited", "reactions", "deleted")]
    assert [f["rev"] for f in frames] == [1, 2, 3]
    assert frames[1]["counts"] == {"👍": 1} and frames[1]["actor"] == "bob" and frames[1]["on"] is True
    room = await db(Room.objects.get)(pk=lobby.pk)
    assert room.last_rev == 3 and room.last_seq == 3
    revs = await db(lambda: list(Message.objects.filter(room=lobby).order_by("seq").values_list("rev", flat=True)))()
    assert revs == [1, 2, 3]
    late = await connect("lobby")
    assert late.frames[0]["rev"] == 3
    await watcher.close()
    await late.close()


async def test_a_refused_change_takes_no_rev(lobby, people):
    ann, bob = people["ann"], people["bob"]
    await db(post)(lobby, ann, "mine")
    with pytest.raises(Refusal):
        await db(services.message_edit)(room=lobby, actor=singer(bob), seq=1, body="not yours")
    with pytest.raises(Refusal):
        await db(services.message_edit)(room=lobby, actor=singer(ann), seq=9, body="nothing there")
    # Removing a reaction that is not there changes nothing.
    result = await db(services.reaction_toggle)(room=lobby, actor=singer(bob), seq=1, emoji="🎵", on=False)
    assert result.changed is False and result.counts == {}
    assert (await db(Room.objects.get)(pk=lobby.pk)).last_rev == 0


async def test_resume_replays_each_changed_message_once_in_rev_order_before_synced(lobby, people, make_room):
    ann, bob, mod = people["ann"], people["bob"], people["mod"]
    await db(services.membership_set)(room=lobby, user=mod, role="conductor", actor=services.SYSTEM)
    for i in range(6):
        await db(post)(lobby, ann, f"m{i + 1}")
    sock = await connect("lobby")
    hello = sock.frames[0]
    seen_seq, seen_rev = hello["seq"], hello["rev"]
    await sock.close()

    # While away: edits, a delete, a redaction, reactions; one message changed twice.
    await db(services.message_edit)(room=lobby, actor=singer(ann), seq=2, body="two, edited")
    await db(services.reaction_toggle)(room=lobby, actor=singer(bob), seq=4, emoji="👍", on=True)
    await db(services.message_delete)(room=lobby, actor=singer(ann), seq=3)
    await db(services.message_redact)(room=lobby, actor=singer(mod), seq=5)
    await db(services.reaction_toggle)(room=lobby, actor=singer(bob), seq=2, emoji="🎉", on=True)
    await db(post)(lobby, bob, "new one")

    back = await connect("lobby", query=f"after={seen_seq}&rev={seen_rev}")
    assert back.frames[0]["rev"] == 5
    frames = [await back.recv() for _ in range(5)]
    frames = [f for f in frames if f["type"] != "presence"]
    while frames[-1]["type"] != "synced":
        frame = await back.recv()
        if frame["type"] != "presence":
            frames.append(frame)
    kinds = [(f["type"], f.get("seq"), f.get("rev")) for f in frames]
    assert kinds == [
        ("message", 7, None),
        ("reactions", 4, 2),
        ("deleted", 3, 3),
        ("edited", 5, 4),
        ("edited", 2, 5),  # edited, then reacted: one frame with its whole state
        ("synced", 7, 5),
    ]
    assert frames[4]["body"] == "two, edited" and frames[4]["reactions"] == {"🎉": 1}
    assert frames[3]["body"] == services.REDACTED
    await back.nothing()

    # Without rev: version 1 behaviour, no change frames.
    v1 = await connect("lobby", query=f"after={seen_seq}")
    message = await v1.expect("message")
    assert message["seq"] == 7
    assert (await v1.expect("synced"))["seq"] == 7
    await v1.nothing()
    await back.close()
    await v1.close()


async def test_changes_past_the_replay_limit_are_truncated_and_paged_over_http(lobby, people, settings):
    settings.CHOIR_REPLAY_LIMIT = 3
    ann = people["ann"]
    for i in range(5):
        await db(post)(lobby, ann, f"m{i + 1}")
    for seq in range(1, 6):
        await db(services.message_edit)(room=lobby, actor=singer(ann), seq=seq, body=f"e{seq}")
    sock = await connect("lobby", query="after=5&rev=0")
    truncated = await sock.expect("truncated")
    assert (truncated["rev_from"], truncated["rev_to"]) == (1, 2)
    revs = [(await sock.expect("edited"))["rev"] for _ in range(3)]
    assert revs == [3, 4, 5]
    assert (await sock.expect("synced"))["rev"] == 5
    page = (await db(Client().get)("/api/rooms/lobby/changes?after_rev=0&limit=2")).json()
    assert [(m["seq"], m["rev"], m["body"]) for m in page["messages"]] == [(1, 1, "e1"), (2, 2, "e2")]
    assert page["has_more"] is True and page["rev"] == 5
    rest = (await db(Client().get)("/api/rooms/lobby/changes?after_rev=2")).json()
    assert [m["rev"] for m in rest["messages"]] == [3, 4, 5] and rest["has_more"] is False
    assert (await db(Client().get)("/api/rooms/lobby/changes")).status_code == 400
    await sock.close()


async def test_a_change_made_while_a_socket_replays_reaches_it_once(lobby, people):
    """A change between the snapshot read and going live is held, then sent once."""
    from choir import consumers

    ann = people["ann"]
    await db(post)(lobby, ann, "one")
    await db(post)(lobby, ann, "two")
    real = consumers.replay

    def snapshot_then_change(room, after, limit, since_rev=None):
        found = real(room, after, limit, since_rev)
        # After the read, before go_live: only the hub can deliver this one.
        services.message_edit(room=room, actor=singer(ann), seq=1, body="one, changed late")
        return found

    consumers.replay = snapshot_then_change
    try:
        sock = await connect("lobby", query="after=2&rev=0")
    finally:
        consumers.replay = real
    assert (await sock.expect("synced"))["rev"] == 0
    edited = await sock.expect("edited")
    assert (edited["seq"], edited["rev"], edited["body"]) == (1, 1, "one, changed late")
    await sock.nothing(0.5)
    await sock.close()


async def test_a_change_replayed_in_the_snapshot_is_not_sent_again(lobby, people):
    from choir import consumers

    ann = people["ann"]
    await db(post)(lobby, ann, "one")
    real = consumers.replay

    def change_then_snapshot(room, after, limit, since_rev=None):
        # The change lands while the socket is joined but before the read:
        # the replay has it, and the hub's copy must be dropped.
        services.message_edit(room=room, actor=singer(ann), seq=1, body="changed early")
        return real(room, after, limit, since_rev)

    consumers.replay = change_then_snapshot
    try:
        sock = await connect("lobby", query="after=1&rev=0")
    finally:
        consumers.replay = real
    assert (await sock.expect("edited"))["rev"] == 1
    assert (await sock.expect("synced"))["rev"] == 1
    await sock.nothing(0.5)
    await sock.close()


async def test_a_message_changed_again_while_the_snapshot_is_read_loses_neither_change(lobby, people):
    """Edited at rev 1 before the resume; reacted to at rev 2 in the middle of its reads.

    Read apart, the room row says rev 1 and the message row says rev 2: the
    replay would skip it and the socket would get only the reaction, never
    the edit. Read at one moment, the edit is replayed and the reaction
    comes live.
    """
    import threading

    from choir import selectors

    ann, bob = people["ann"], people["bob"]
    await db(post)(lobby, ann, "one")
    await db(post)(lobby, ann, "two")
    await db(services.message_edit)(room=lobby, actor=singer(ann), seq=1, body="one, edited")
    real = selectors.changes_between

    def react_meanwhile(*args, **kwargs):
        # On another connection, committed between the snapshot's reads (on
        # SQLite it waits for the snapshot's transaction, then comes live).
        worker = threading.Thread(
            target=lambda: services.reaction_toggle(room=lobby, actor=singer(bob), seq=1, emoji="👀", on=True)
        )
        worker.start()
        worker.join(timeout=1.0)
        return real(*args, **kwargs)

    selectors.changes_between = react_meanwhile
    try:
        sock = await connect("lobby", query="after=2&rev=0")
    finally:
        selectors.changes_between = real
    edited = await sock.expect("edited")
    assert (edited["seq"], edited["rev"], edited["body"]) == (1, 1, "one, edited")
    assert (await sock.expect("synced"))["rev"] == 1
    reacted = await sock.expect("reactions", timeout=25)
    assert (reacted["rev"], reacted["counts"]) == (2, {"👀": 1})
    await sock.nothing(0.5)
    await sock.close()


async def test_the_hub_writes_changes_in_rev_order_and_fills_a_lasting_gap(lobby, people):
    from choir.fanout import Feed, Seat

    ann = people["ann"]
    for i in range(3):
        await db(post)(lobby, ann, f"m{i}")
    for seq, body in ((1, "a"), (2, "b"), (3, "c"), (1, "d"), (2, "e")):  # revs 1..5
        await db(services.message_edit)(room=lobby, actor=singer(ann), seq=seq, body=body)
    # Rev 6: message 1, edited at lost rev 4, changes again before the gap is filled.
    await db(services.reaction_toggle)(room=lobby, actor=singer(ann), seq=1, emoji="👌", on=True)

    class Fake:
        conn_id, user_id, is_staff, name, client_ip, wire = "f", None, False, "f", "?", None

        def __init__(self):
            self.sent = []

        async def base_send(self, message):
            self.sent.append(message["text"])

        async def shut(self, code, reason):
            pass

    # Not in the room's group, and served by no hub: it hears only what is handed to it.
    feed = Feed(lobby, last_seq=3, last_rev=0)
    fake = Fake()
    seat = feed.seats["f"] = Seat(fake, feed)
    seat.backlog = None  # live
    try:
        await feed.changes.hear(3, "c3")
        await feed.changes.hear(2, "c2")
        assert fake.sent == []
        await feed.changes.hear(1, "c1")
        await feed.changes.hear(2, "c2")
        assert fake.sent == ["c1", "c2", "c3"]
        # Rev 4's broadcast is lost: rev 5 waits, then the database fills in.
        await feed.changes.hear(5, "c5")
        assert fake.sent == ["c1", "c2", "c3"]
        for _ in range(100):
            if len(fake.sent) == 5:
                break
            await asyncio.sleep(0.05)
        filled = [protocol.json.loads(text) for text in fake.sent[3:]]
        # Message 1 comes with its whole state at rev 6: the edit of rev 4 is not lost.
        assert [(f["type"], f["seq"], f["rev"], f["body"]) for f in filled] == [("edited", 2, 5, "e"), ("edited", 1, 6, "d")]
        assert filled[1]["reactions"] == {"👌": 1}
        assert feed.changes.last_rev == 6 and feed.changes.pending == {}
        await feed.changes.hear(6, "c6")  # its broadcast, late: already delivered
        assert len(fake.sent) == 5
    finally:
        feed.cancel_tasks()


# Replies -------------------------------------------------------------------


async def test_a_reply_carries_its_parent_and_the_excerpt_follows_edits_and_deletes(lobby, people):
    ann, bob = people["ann"], people["bob"]
    parent = await db(post)(lobby, ann, "x" * 200)
    sock = await connect("lobby", user=bob)
    await sock.send({"type": "say", "body": "agreed", "client_id": "r1", "reply_to": parent.seq})
    frame = await sock.expect("message")
    assert frame["reply_to"] == {"seq": 1, "author": "ann", "excerpt": "x" * 140}
    await sock.send({"type": "say", "body": "to nothing", "client_id": "r2", "reply_to": 99})
    error = await sock.expect("error")
    assert (error["code"], error["ref"]) == ("not_found", "r2")
    await sock.send({"type": "say", "body": "bad", "reply_to": "one"})
    assert (await sock.expect("error"))["code"] == "invalid"

    await db(services.message_edit)(room=lobby, actor=singer(ann), seq=1, body="short now")
    history = (await db(Client().get)("/api/rooms/lobby/messages")).json()["messages"]
    assert history[1]["reply_to"]["excerpt"] == "short now"
    await db(services.message_delete)(room=lobby, actor=singer(ann), seq=1)
    history = (await db(Client().get)("/api/rooms/lobby/messages")).json()["messages"]
    assert history[1]["reply_to"] == {"seq": 1, "author": "ann", "excerpt": ""}
    # Replayed frames read it the same way.
    replay = await connect("lobby", query="after=1")
    assert (await replay.expect("message"))["reply_to"]["excerpt"] == ""
    await sock.close()
    await replay.close()


def test_the_services_layer_takes_reply_to(lobby, people):
    ann = people["ann"]
    post(lobby, ann, "first")
    reply = services.message_post(room=lobby, singer=singer(ann), body="second", reply_to=1)
    assert reply.message.reply_to.seq == 1 and '"excerpt":"first"' in reply.frame
    with pytest.raises(Refusal) as refused:
        services.message_post(room=lobby, singer=singer(ann), body="third", reply_to=7)
    assert refused.value.code == "not_found"
    assert Room.objects.get(pk=lobby.pk).last_seq == 2


# Reactions -----------------------------------------------------------------


async def test_react_toggles_idempotently_and_everyone_sees_counts(lobby, people):
    ann, bob = people["ann"], people["bob"]
    await db(post)(lobby, ann, "sing")
    a = await connect("lobby", user=ann)
    b = await connect("lobby", user=bob)
    await b.send({"type": "react", "seq": 1, "emoji": "👍", "on": True})
    for sock in (a, b):
        frame = await sock.expect("reactions")
        assert (frame["counts"], frame["actor"], frame["emoji"], frame["on"], frame["rev"]) == ({"👍": 1}, "bob", "👍", True, 1)
    await b.send({"type": "react", "seq": 1, "emoji": "👍", "on": True})  # again: nothing changes
    again = await b.expect("reactions")
    assert again["counts"] == {"👍": 1} and again["rev"] == 1
    await a.nothing()
    await a.send({"type": "react", "seq": 1, "emoji": "👍"})
    assert (await b.expect("reactions"))["counts"] == {"👍": 2}
    assert (await a.expect("reactions"))["counts"] == {"👍": 2}
    await b.send({"type": "react", "seq": 1, "emoji": "👍", "on": False})
    assert (await a.expect("reactions"))["counts"] == {"👍": 1}
    client = await db(signed_in)(ann)
    history = (await db(client.get)("/api/rooms/lobby/messages")).json()["messages"]
    assert history[0]["reactions"] == {"👍": 1} and history[0]["mine"] == ["👍"]
    assert "mine" not in (await db(Client().get)("/api/rooms/lobby/messages")).json()["messages"][0]
    for bad in ("", "a b", "x" * 33, 5, "\t"):
        await a.send({"type": "react", "seq": 1, "emoji": bad, "on": True})
        assert (await a.expect("error"))["code"] == "invalid"
    await a.send({"type": "react", "seq": 42, "emoji": "👍", "on": True})
    assert (await a.expect("error"))["code"] == "not_found"
    await a.close()
    await b.close()


def test_a_message_holds_at_most_twenty_distinct_emoji(lobby, people):
    ann = people["ann"]
    post(lobby, ann, "popular")
    for i in range(20):
        services.reaction_toggle(room=lobby, actor=singer(ann), seq=1, emoji=f"e{i}", on=True)
    with pytest.raises(Refusal) as refused:
        services.reaction_toggle(room=lobby, actor=singer(ann), seq=1, emoji="one-more", on=True)
    assert refused.value.code == "invalid"
    # An emoji already there is still fine.
    bob = people["bob"]
    assert services.reaction_toggle(room=lobby, actor=singer(bob), seq=1, emoji="e3", on=True).counts["e3"] == 2


def test_who_may_react(make_room, people, make_user):
    from choir.models import Membership

    ann, bob, mod = people["ann"], people["bob"], people["mod"]
    stage = make_room("stage", mode=Room.Mode.STAGE)
    Membership.objects.create(room=stage, user=mod, role=Membership.Role.CONDUCTOR)
    post(stage, mod, "a solo")
    # A listener in a stage room may react...
    assert services.reaction_toggle(room=stage, actor=singer(ann), seq=1, emoji="👏", on=True).changed
    # ...unless the room turned reactions off.
    stage.reactions_enabled = False
    stage.save()
    with pytest.raises(Refusal) as refused:
        services.reaction_toggle(room=stage, actor=singer(bob), seq=1, emoji="👏", on=True)
    assert refused.value.code == "forbidden"
    assert services.reaction_toggle(room=stage, actor=singer(mod), seq=1, emoji="👏", on=True).changed
    # A mute blocks reactions as it blocks posts, in any room.
    stage.reactions_enabled = True
    stage.save()
    services.user_mute(room=stage, actor=singer(mod), user=bob, minutes=10)
    with pytest.raises(Refusal):
        services.reaction_toggle(room=stage, actor=singer(bob), seq=1, emoji="👏", on=True)
    hall = make_room("hall")
    post(hall, ann, "hi")
    services.user_mute(room=hall, actor=Singer(user=make_user("root", is_staff=True, is_superuser=True), name="root"), user=bob, minutes=5)
    with pytest.raises(Refusal):
        services.reaction_toggle(room=hall, actor=singer(bob), seq=1, emoji="👏", on=True)
    # A guest where guests may not post may not react either.
    with pytest.raises(Refusal):
        services.reaction_toggle(room=hall, actor=Singer(user=None, name="g", guest_key="g1"), seq=1, emoji="👏", on=True)


async def test_concurrent_reactions_from_many_sockets_give_exact_counts(lobby, people, make_user):
    ann = people["ann"]
    await db(post)(lobby, ann, "vote")
    users = [await db(make_user)(f"voter{i}") for i in range(8)]
    socks = [await connect("lobby", user=u) for u in users]
    guests = [await connect("lobby") for _ in range(4)]  # guests may post in the lobby, so they may react
    everyone = socks + guests
    # Each adds 👍 twice and 🎵 once, then takes 🎵 back, all at once.
    for sock in everyone:
        await sock.send({"type": "react", "seq": 1, "emoji": "👍", "on": True})
        await sock.send({"type": "react", "seq": 1, "emoji": "👍", "on": True})
        await sock.send({"type": "react", "seq": 1, "emoji": "🎵", "on": True})
        await sock.send({"type": "react", "seq": 1, "emoji": "🎵", "on": False})
    watcher = everyone[0]
    last = None
    while last is None or last["rev"] < len(everyone) * 3:
        frame = await watcher.expect("reactions", timeout=10)
        if frame["actor"] is not None:  # a change, not an answer to its own repeat
            assert last is None or frame["rev"] == last["rev"] + 1
            last = frame
    assert last["rev"] == len(everyone) * 3  # 👍 on, 🎵 on, 🎵 off for each: the repeats took no rev
    assert last["counts"] == {"👍": len(everyone)}
    message = await db(Message.objects.get)(room=lobby, seq=1)
    assert message.reactions == {"👍": len(everyone)}
    assert await db(Reaction.objects.filter(message=message).count)() == len(everyone)
    for sock in everyone:
        await sock.close()


# Mentions ------------------------------------------------------------------


def test_mentions_are_resolved_when_stored(lobby, people, make_user, django_assert_max_num_queries):
    make_user("Cleo.Mae")
    ann = people["ann"]
    message = post(lobby, ann, "@ANN @bob, and @cleo.mae. mail ann@example.org, @nobody @bob again")
    assert message.mentions == ["ann", "bob", "Cleo.Mae"]
    # The author's own mention is not one to notify.
    assert sorted(Mention.objects.values_list("user__username", flat=True)) == ["Cleo.Mae", "bob"]
    frame = (Client().get("/api/rooms/lobby/messages")).json()["messages"][0]
    assert frame["mentions"] == ["ann", "bob", "Cleo.Mae"]
    # A batch costs one user query, whatever its size.
    drafts = [services.Draft(singer(ann), f"hey @bob #{i}") for i in range(20)]
    with django_assert_max_num_queries(12):
        services.messages_post(room=lobby, drafts=drafts)
    assert Mention.objects.filter(user=people["bob"]).count() == 21
    # An edit re-reads them; a delete drops them.
    services.message_edit(room=lobby, actor=singer(ann), seq=1, body="just @cleo.mae")
    assert list(Mention.objects.filter(message=message).values_list("user__username", flat=True)) == ["Cleo.Mae"]
    services.message_delete(room=lobby, actor=singer(ann), seq=1)
    assert not Mention.objects.filter(message=message).exists()


# Read markers and unread ---------------------------------------------------


async def test_read_moves_forward_only_and_reaches_the_readers_other_sockets(lobby, people):
    ann, bob = people["ann"], people["bob"]
    for i in range(5):
        await db(post)(lobby, bob, f"m{i}")
    first = await connect("lobby", user=ann)
    assert first.frames[0]["you"]["read_seq"] is None
    second = await connect("lobby", user=ann)
    other = await connect("lobby", user=bob)
    guest = await connect("lobby")
    assert guest.frames[0]["you"]["read_seq"] is None
    await first.send({"type": "read", "seq": 3})
    echo = await second.expect("read")
    assert echo == {"type": "read", "room": "lobby", "seq": 3}
    await first.send({"type": "read", "seq": 2})  # backwards: nothing
    await first.send({"type": "read", "seq": 99})  # past the end: up to the last seq
    assert (await second.expect("read"))["seq"] == 5
    await first.nothing()
    await other.nothing()
    await guest.send({"type": "read", "seq": 1})
    assert (await guest.expect("error"))["code"] == "forbidden"
    again = await connect("lobby", user=ann)
    assert again.frames[0]["you"]["read_seq"] == 5
    for sock in (first, second, other, guest, again):
        await sock.close()


def test_unread_and_mention_counts_after_posts_deletes_and_reads(lobby, people, make_room):
    ann, bob = people["ann"], people["bob"]
    hall = make_room("hall")
    for i in range(4):
        post(lobby, bob, f"hello {i}")
    post(lobby, bob, "hey @ann")
    post(lobby, ann, "my own, @ann")  # the caller's own: never unread
    post(lobby, bob, "@ann again")
    post(hall, bob, "@ann in the hall")

    def counts():
        rooms = signed_in(ann).get("/api/rooms/").json()["rooms"]
        return {r["slug"]: (r["unread"], r["mentions"], r["read_seq"]) for r in rooms}

    assert counts() == {"hall": (1, 1, None), "lobby": (6, 2, None)}
    services.message_delete(room=lobby, actor=singer(bob), seq=7)
    services.message_delete(room=lobby, actor=singer(bob), seq=1)
    assert counts()["lobby"] == (4, 1, None)
    services.read_mark(room=lobby, reader=singer(ann), seq=4)
    assert counts()["lobby"] == (1, 1, 4)
    services.read_mark(room=lobby, reader=singer(ann), seq=5)
    assert counts()["lobby"] == (0, 0, 5)
    services.read_mark(room=lobby, reader=singer(ann), seq=2)
    assert counts()["lobby"] == (0, 0, 5)
    assert "unread" not in Client().get("/api/rooms/").json()["rooms"][0]


def test_unread_counts_cost_one_query_whatever_the_rooms(lobby, people, make_room, django_assert_num_queries):
    ann, bob = people["ann"], people["bob"]
    for i in range(5):
        room = make_room(f"room{i}")
        post(room, bob, "@ann hi")
    client = signed_in(ann)
    client.get("/api/rooms/")
    # Session, user, the user's and their groups' permissions (who may see
    # private rooms), then the rooms with their counts: five, however many rooms.
    with django_assert_num_queries(5):
        rooms = client.get("/api/rooms/").json()["rooms"]
    assert sum(r["unread"] for r in rooms) == 5


# Search and context --------------------------------------------------------


def test_search_finds_every_word_newest_first_and_skips_deleted(lobby, people):
    ann = people["ann"]
    post(lobby, ann, "The quick brown fox")
    post(lobby, ann, "a slow brown dog")
    post(lobby, ann, "QUICK brown fox, again")
    post(lobby, ann, "quick brown fox, deleted")
    services.message_delete(room=lobby, actor=singer(ann), seq=4)
    client = Client()
    found = client.get("/api/rooms/lobby/search", {"q": "quick   fox"}).json()
    assert [m["seq"] for m in found["messages"]] == [3, 1]
    assert [m["seq"] for m in client.get("/api/rooms/lobby/search", {"q": "brown"}).json()["messages"]] == [3, 2, 1]
    assert [m["seq"] for m in client.get("/api/rooms/lobby/search", {"q": "brown", "before": 3, "limit": 1}).json()["messages"]] == [2]
    assert client.get("/api/rooms/lobby/search", {"q": "zebra"}).json()["messages"] == []
    assert client.get("/api/rooms/lobby/search", {"q": "deleted"}).json()["messages"] == []
    assert client.get("/api/rooms/lobby/search", {"q": "  "}).status_code == 400
    assert client.get("/api/rooms/lobby/search", {"q": "x", "limit": "many"}).status_code == 400


def test_search_honours_private_rooms(make_room, people):
    from choir.models import Membership

    ann, bob = people["ann"], people["bob"]
    secret = make_room("secret", is_public=False)
    Membership.objects.create(room=secret, user=ann)
    post(secret, ann, "the secret plan")
    assert Client().get("/api/rooms/secret/search", {"q": "plan"}).status_code == 404
    assert signed_in(bob).get("/api/rooms/secret/search", {"q": "plan"}).status_code == 404
    assert [m["body"] for m in signed_in(ann).get("/api/rooms/secret/search", {"q": "plan"}).json()["messages"]] == ["the secret plan"]
    assert signed_in(bob).get("/api/rooms/secret/messages", {"around": 1}).status_code == 404
    assert signed_in(bob).get("/api/rooms/secret/changes", {"after_rev": 0}).status_code == 404


def test_around_puts_the_message_in_the_middle(lobby, people):
    ann = people["ann"]
    for i in range(20):
        post(lobby, ann, f"m{i + 1}")
    client = Client()
    page = client.get("/api/rooms/lobby/messages", {"around": 10, "limit": 5}).json()
    assert [m["seq"] for m in page["messages"]] == [8, 9, 10, 11, 12]
    assert [m["seq"] for m in client.get("/api/rooms/lobby/messages", {"around": 20, "limit": 5}).json()["messages"]] == [16, 17, 18, 19, 20]
    assert [m["seq"] for m in client.get("/api/rooms/lobby/messages", {"around": 1, "limit": 4}).json()["messages"]] == [1, 2, 3, 4]
    assert client.get("/api/rooms/lobby/messages", {"around": 3, "before": 2}).status_code == 400


# Admin ---------------------------------------------------------------------


def test_admin_shows_replies_mentions_reactions_and_read_markers(lobby, people, make_user):
    ann, bob = people["ann"], people["bob"]
    post(lobby, ann, "the question")
    reply = services.message_post(room=lobby, singer=singer(bob), body="answer for @ann", reply_to=1).message
    services.reaction_toggle(room=lobby, actor=singer(bob), seq=1, emoji="🎶", on=True)
    services.read_mark(room=lobby, reader=singer(ann), seq=2)
    staff = Client()
    staff.force_login(make_user("boss", is_staff=True, is_superuser=True))
    parent_page = staff.get(f"/admin/choir/message/{reply.reply_to_id}/change/").content.decode()
    assert "answer for @ann" in parent_page and "🎶" in parent_page  # its replies and reactions
    reply_page = staff.get(f"/admin/choir/message/{reply.pk}/change/").content.decode()
    assert "#1 ann: the question" in reply_page and "ann" in reply_page
    assert "🎶" in staff.get("/admin/choir/reaction/").content.decode()
    markers = staff.get("/admin/choir/readmarker/")
    assert markers.status_code == 200 and "lobby" in markers.content.decode().lower()


def test_a_permalink_opens_the_room_page_at_the_message_marked_without_javascript(lobby, people, settings):
    settings.CHOIR_PAGE_MESSAGES = 5
    ann = people["ann"]
    for i in range(30):
        post(lobby, ann, f"note {i + 1}")
    html = Client().get(lobby.get_absolute_url() + "?at=12").content.decode()
    assert 'id="m12"' in html and "note 12" in html and 'aria-current="true"' in html
    assert html.count('aria-current="true"') == 1
    assert "note 30" not in html and 'id="m10"' in html and 'id="m14"' in html
    assert "Back to the latest messages" in html
