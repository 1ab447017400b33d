"""A Daphne worker killed with SIGKILL loses only its own sockets, and their clients miss nothing.

`manage.py serve --workers 2` shares one listening socket between two Daphne
processes. The test finds which process holds each client's connection (ss),
kills one of them in the middle of a conversation, and checks that exactly
its clients were dropped, that they resumed with ?after= on the same port
(served by the survivor or by the replacement `serve` starts), and that every
client saw every seq exactly once, in order.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess

import pytest
from channels.db import database_sync_to_async

from tests.chorus import Chorister, assert_nothing_lost_or_doubled, converge, report, room_total, wait_for
from tests.support import need, session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def holders(port: int) -> dict[int, int]:
    """Client port -> pid of the server process holding that connection."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True
    ).stdout
    found = {}
    for line in out.splitlines():
        peer = re.search(r"127\.0\.0\.1:\d+\s+127\.0\.0\.1:(\d+)", line)
        pid = re.search(r"pid=(\d+)", line)
        if peer and pid:
            found[int(peer.group(1))] = int(pid.group(1))
    return found


async def test_killing_one_worker_drops_only_its_sockets_and_its_clients_miss_nothing(
    daphne, lobby, make_user, uses_postgres, uses_redis
):
    need(subprocess.run(["which", "ss"], capture_output=True).returncode == 0, "ss (iproute2) is not installed")
    server = daphne(workers=2)
    workers = server.worker_pids()
    assert len(workers) == 2
    choir: list[Chorister] = []

    async def add_client() -> None:
        name = f"alto{len(choir)}"
        user = await database_sync_to_async(make_user)(name)
        cookie = (await database_sync_to_async(session_cookie)(user)).decode()
        client = Chorister(name, lambda after: server.ws("lobby", f"after={after}"), cookie=cookie)
        choir.append(client)
        client.start()

        async def connected() -> bool:
            return client.synced.is_set()

        await wait_for(connected, 20, f"{name} connected")

    # The kernel hands each connection to whichever worker accepts first: add
    # clients until both workers hold some.
    where: dict[str, int | None] = {}
    while len(choir) < 10 or (len(set(where.values())) < 2 and len(choir) < 40):
        await add_client()
        held = await asyncio.to_thread(holders, server.port)
        where = {c.name: held.get(c.local_port) for c in choir}
    assert set(where.values()) <= set(workers), where
    victim, survivor = workers
    if sum(1 for pid in where.values() if pid == victim) < sum(1 for pid in where.values() if pid == survivor):
        victim, survivor = survivor, victim
    doomed = {name for name, pid in where.items() if pid == victim}
    spared = {name for name, pid in where.items() if pid == survivor}
    assert doomed and spared, f"40 connections and still all on one worker: {where}"

    # One sender on each worker, so a message is in flight on the victim when it dies.
    for name in (min(doomed), min(spared)):
        next(c for c in choir if c.name == name).sing(40, pace=0.05)
    total = room_total()

    async def some_sung() -> bool:
        return await total() >= 20

    await wait_for(some_sung, 30, "20 messages before the kill")
    os.kill(victim, signal.SIGKILL)
    killed_at = await total()

    final = await converge(choir, total, timeout=60)
    for c in choir:
        await c.stop()
    result = report("worker-kill", choir, final, killed_at_seq=killed_at, dropped=sorted(doomed), spared=sorted(spared))
    dropped = {c.name for c in choir if c.connects > 1}
    assert dropped == doomed, "the dropped sockets are not exactly the killed worker's"
    assert killed_at < final, "the conversation did not go on after the kill"
    assert result["total"]["lost"] == 0
    assert result["total"]["doubled"] == 0
    await assert_nothing_lost_or_doubled(choir, final)
    assert len(server.worker_pids()) == 2, "serve did not replace the killed worker"
