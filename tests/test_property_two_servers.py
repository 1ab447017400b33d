"""Random programs of frames, reconnects and admin actions against two server
processes; after each, the guarantees hold:

- the room's seqs are gap-free, 1..N, and every message is stored once;
- every message a sender saw acknowledged is stored exactly once, retries included;
- every client saw every message exactly once, in seq order, across reconnects
  (each resumes with ?after= on whichever server it lands on next);
- no frame was answered `unavailable` and no HTTP request got a 5xx.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from django.db import connection
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from choir import services
from choir.models import Message, Room

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLIENTS = 4
JUNK = [
    "",  # empty body
    "\x00",
    '{"type": "say"}',
    '{"type": "bogus"}',
    '{"type": "say", "body": "x", "client_id": ""}',
    '{"type": "edit", "seq": 999999, "body": "x"}',
    '{"type": "delete", "seq": -1}',
    '{"type": "say", "body": ' + "[" * 2000 + "]" * 2000 + "}",
    "x" * 5000,
]
bodies = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40).filter(str.strip)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("say"), st.integers(0, CLIENTS - 1), bodies),
        st.tuples(st.just("plain"), st.integers(0, CLIENTS - 1), bodies),
        st.tuples(st.just("retry"), st.integers(0, CLIENTS - 1)),
        st.tuples(st.just("junk"), st.integers(0, CLIENTS - 1), st.sampled_from(JUNK)),
        st.tuples(st.just("reconnect"), st.integers(0, CLIENTS - 1)),
        st.tuples(st.just("announce"), bodies),
        st.tuples(st.just("delete"), st.integers(1, 40)),
    ),
    min_size=4,
    max_size=30,
)
rooms = itertools.count(1)


@dataclass
class Client:
    """One person: a socket that moves between the two servers as it reconnects."""

    index: int
    urls: list[str]
    last: int = 0  # highest seq seen; resumes with ?after=last
    seen: list[int] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)  # client_id -> seq, this connection's
    acked_ever: dict[str, int] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)  # client_ids sent on this connection
    failures: list[str] = field(default_factory=list)
    hops: int = 0
    ws: Any = None
    reader: asyncio.Task | None = None

    async def open(self) -> None:
        url = self.urls[(self.index + self.hops) % len(self.urls)] + f"?after={self.last}&name=p{self.index}"
        self.ws = await websockets.connect(url, max_queue=None)
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert hello["type"] == "hello", hello
        self.acked, self.sent = {}, []
        self.reader = asyncio.ensure_future(self._read(self.ws))

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "message":
                    if frame["seq"] <= self.last and frame["client_id"] in self.sent:
                        # A retry's answer: the original frame again, by design.
                        self.acked_ever[frame["client_id"]] = frame["seq"]
                        continue
                    if frame["seq"] != self.last + 1:
                        self.failures.append(f"client {self.index} got seq {frame['seq']} after {self.last}")
                    self.last = max(self.last, frame["seq"])
                    self.seen.append(frame["seq"])
                    if frame["client_id"] in self.sent:
                        self.acked[frame["client_id"]] = frame["seq"]
                        self.acked_ever[frame["client_id"]] = frame["seq"]
                elif frame["type"] == "error" and frame["code"] == "unavailable":
                    self.failures.append(f"client {self.index}: {frame}")
        except websockets.ConnectionClosed:
            pass

    async def reconnect(self) -> None:
        await self.close()
        self.hops += 1
        await self.open()

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            await self.reader


async def run(program: list[tuple], urls: list[str], room: Room, http: list[str]) -> None:
    clients = [Client(i, urls) for i in range(CLIENTS)]
    for client in clients:
        await client.open()
    ids = itertools.count()
    for step in program:
        kind = step[0]
        if kind == "say":
            client, cid = clients[step[1]], f"c{step[1]}-{next(ids)}"
            client.sent.append(cid)
            await client.ws.send(json.dumps({"type": "say", "body": step[2], "client_id": cid}))
        elif kind == "plain":
            await clients[step[1]].ws.send(step[2])
        elif kind == "retry":
            client = clients[step[1]]
            if client.sent:
                cid = client.sent[-1]
                await client.ws.send(json.dumps({"type": "say", "body": "a retry", "client_id": cid}))
        elif kind == "junk":
            await clients[step[1]].ws.send(step[2])
        elif kind == "reconnect":
            await clients[step[1]].reconnect()
        elif kind == "announce":
            await db(services.announce, room=room, text=step[1], actor=services.SYSTEM)
        elif kind == "delete":
            await db(_delete, room.pk, step[1])

    # Settle: posts may still be landing; wait until every client has the
    # latest seq and no newer one has appeared meanwhile.
    latest = -1
    for _ in range(400):
        now = await db(lambda: Room.objects.get(pk=room.pk).last_seq)
        if now == latest and all(c.last >= latest for c in clients):
            break
        latest = now
        await asyncio.sleep(0.05)
    for client in clients:
        await client.close()

    stored = await db(
        lambda: list(Message.objects.filter(room_id=room.pk).order_by("seq").values_list("seq", "client_id"))
    )
    assert [seq for seq, _ in stored] == list(range(1, latest + 1)), "seqs are not gap-free"
    by_client_id: dict[str, list[int]] = {}
    for seq, cid in stored:
        if cid is not None:
            by_client_id.setdefault(cid, []).append(seq)
    for client in clients:
        assert not client.failures, client.failures
        assert client.seen == list(range(1, latest + 1)), f"client {client.index} saw {client.seen}"
        for cid, seq in client.acked_ever.items():
            assert by_client_id.get(cid) == [seq], f"{cid} acknowledged as {seq}, stored as {by_client_id.get(cid)}"
    for base in http:
        with urllib.request.urlopen(f"{base}/api/rooms/{room.slug}/messages?after=0&limit=200", timeout=10) as reply:
            assert reply.status == 200
            assert [m["seq"] for m in json.loads(reply.read())["messages"]] == list(range(1, latest + 1))


async def db(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ORM code on a worker thread, closing that thread's connection after
    (an open one would keep the test database from being dropped)."""

    def call() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return await asyncio.to_thread(call)


def _delete(room_id: int, seq: int) -> None:
    room = Room.objects.get(pk=room_id)
    message = Message.objects.filter(room=room, seq=seq, deleted_at__isnull=True).first()
    if message is not None:
        services.messages_delete(messages=[message], actor=services.SYSTEM)


@pytest.fixture
def two_servers(daphne, uses_redis):
    return [daphne(), daphne()]


def test_random_programs_keep_every_guarantee_across_two_servers(two_servers):
    http = [server.url for server in two_servers]

    @hypothesis_settings(
        max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
    )
    @given(program=steps)
    def check(program: list[tuple]) -> None:
        room = services.room_create(slug=f"prop-{next(rooms)}", title="Property", guests_may_post=True, actor=services.SYSTEM)
        asyncio.run(run(program, [server.ws(room.slug) for server in two_servers], room, http))

    check()
