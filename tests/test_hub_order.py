"""The hub writes each room's messages in seq order, once, whatever order they arrive in."""

import asyncio

import pytest

from choir.fanout import Feed, Seat
from choir.fanout.roster import Roster
from choir.models import Room


class FakeSocket:
    def __init__(self, conn_id: str) -> None:
        self.conn_id, self.user_id, self.is_staff, self.name, self.client_ip = conn_id, None, False, conn_id, "?"
        self.wire = None
        self.sent: list[str] = []

    async def base_send(self, message):
        self.sent.append(message["text"])

    async def shut(self, code, reason):
        pass


def batch(*seqs):
    return [[seq, f"m{seq}"] for seq in seqs]


class Seated:
    """A socket and its seat: what it was sent, and its delivery state."""

    def __init__(self, feed: Feed, conn_id: str) -> None:
        self.socket = FakeSocket(conn_id)
        self.seat = Seat(self.socket, feed)
        self.seat.backlog = None  # live
        feed.seats[conn_id] = self.seat

    @property
    def sent(self) -> list[str]:
        return self.socket.sent


@pytest.fixture
async def feed_with_two():
    feed = Feed(Room(pk=10_000, slug="order"), last_seq=0)
    sockets = [Seated(feed, "a"), Seated(feed, "b")]
    yield feed, sockets
    if feed.gap_task is not None:
        feed.gap_task.cancel()
        await asyncio.gather(feed.gap_task, return_exceptions=True)


async def test_messages_ahead_of_a_gap_wait_then_go_out_in_order(feed_with_two):
    feed, sockets = feed_with_two
    await feed.hear_messages(batch(3, 4))
    assert all(sock.sent == [] for sock in sockets)
    await feed.hear_messages(batch(1))
    assert all(sock.sent == ["m1"] for sock in sockets)
    await feed.hear_messages(batch(2))
    assert all(sock.sent == ["m1", "m2", "m3", "m4"] for sock in sockets)
    assert feed.last_seq == 4 and feed.pending == {}


async def test_repeats_and_overlapping_batches_are_written_once(feed_with_two):
    feed, sockets = feed_with_two
    await feed.hear_messages(batch(1, 2))
    await feed.hear_messages(batch(2, 3))
    await feed.hear_messages(batch(1, 2, 3, 4))
    assert all(sock.sent == ["m1", "m2", "m3", "m4"] for sock in sockets)


async def test_a_socket_resuming_mid_batch_gets_only_what_it_lacks(feed_with_two):
    feed, sockets = feed_with_two
    sockets[1].seat.cursor = 2  # it replayed up to 2 already
    await feed.hear_messages(batch(1, 2, 3))
    assert sockets[0].sent == ["m1", "m2", "m3"]
    assert sockets[1].sent == ["m3"]


async def test_a_replaying_socket_holds_the_batch_until_it_goes_live(feed_with_two):
    feed, sockets = feed_with_two
    sockets[1].seat.backlog = []
    await feed.hear_messages(batch(1, 2))
    assert sockets[1].sent == []
    sockets[1].seat.cursor = 1
    await feed.go_live(sockets[1].seat)
    assert sockets[1].sent == ["m2"]


@pytest.mark.parametrize("limit", [3, 200])
def test_the_online_roster_stays_sorted_and_exact_as_people_come_and_go(limit):
    # The hello's `online` list (its first `limit` names) is kept sorted
    # incrementally; it must always equal sorting, from scratch, everyone
    # this process and the others hold.
    import random

    rng = random.Random(5)
    roster = Roster(limit=limit)
    people = ["ann", "Ann", "bo", "BO", "cy", "Zed", "émile", "Émile", "dee", "al"]
    elsewhere: set[str] = set()  # what other processes hold
    for step in range(3_000):
        action = rng.random()
        name = rng.choice(people)
        if action < 0.35:
            roster.arrive(name)
        elif action < 0.7:
            if roster.names[name]:
                roster.depart(name)
        elif action < 0.8:
            heard = set(rng.sample(people, rng.randint(0, 3)))
            elsewhere |= heard
            roster.add(heard)
        elif action < 0.9:
            gone = set(rng.sample(people, rng.randint(0, 3)))
            elsewhere -= gone
            roster.remove(gone)
        elif action < 0.97:
            elsewhere = set(rng.sample(people, rng.randint(0, 4)))
            roster.set_online(elsewhere | roster.names.keys())
        # The flush: the store says which departed names are still held elsewhere.
        joined, left, vanished = roster.take_changes()
        roster.remove((left | vanished) - elsewhere)
        expected = elsewhere | roster.names.keys()
        assert roster.everyone == expected, step
        assert roster.count == len(expected), step
        ordered = roster.sorted_online()
        assert set(ordered) <= expected, step
        assert [n.casefold() for n in ordered] == sorted(n.casefold() for n in expected)[:limit], step


@pytest.mark.django_db(transaction=True)
async def test_a_process_hears_its_own_messages_without_the_channel_layer(lobby, monkeypatch):
    # Its own posts reach its sockets straight from the commit (choir/broadcast.py);
    # the channel layer carries them to other processes. With the layer
    # silent and the hub's resync out of the way, only that path can deliver.
    from choir import broadcast
    from choir.fanout import Hub
    from tests.support import connect

    monkeypatch.setattr(Hub, "RESYNC_EVERY", 3600.0)  # before the hub starts its loop
    listener = await connect("lobby")
    sender = await connect("lobby")

    async def silent(room_id, event):
        return None

    monkeypatch.setattr(broadcast, "asend", silent)
    await sender.say("straight from the commit")
    for sock in (sender, listener):
        frame = await sock.expect("message")
        assert (frame["seq"], frame["body"]) == (1, "straight from the commit")
    await listener.close()
    await sender.close()


@pytest.mark.django_db(transaction=True)
async def test_a_gap_noticed_in_a_first_hand_delivery_is_filled_from_the_database(lobby, monkeypatch):
    # Seq 1 is stored but its broadcast is lost; seq 2 arrives first-hand,
    # from a commit hook run on behalf of a database thread. The gap fill it
    # starts must still be able to read the database.
    from channels.db import database_sync_to_async

    from choir import broadcast, services
    from choir.access import Singer
    from choir.fanout import Hub
    from tests.support import connect

    monkeypatch.setattr(Hub, "RESYNC_EVERY", 3600.0)
    listener = await connect("lobby")
    with monkeypatch.context() as lost:
        lost.setattr(broadcast, "on_commit", lambda room_id, event: None)
        await database_sync_to_async(services.message_post)(
            room=lobby, singer=Singer(user=None, name="ghost", guest_key="g"), body="lost broadcast"
        )
    sender = await connect("lobby")
    await sender.say("heard first-hand")
    bodies = [(await listener.expect("message", timeout=5))["body"] for _ in range(2)]
    assert bodies == ["lost broadcast", "heard first-hand"]
    await listener.close()
    await sender.close()
