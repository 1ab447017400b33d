"""Redis restarts under two servers while clients talk: nothing acknowledged is lost or doubled.

A private redis-server (its own port, started and killed by the test) carries
the channel layer and presence for two `manage.py serve` processes; careful
clients on both send with client_ids and count. Redis is killed in the middle
of the conversation and started again, empty. Every stored message still
reaches every client exactly once, in order (the hubs heal from the
database), the sockets stay open, and both processes are members of the
room's group again afterwards.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from choir import events
from tests.chorus import (
    Chorister,
    PrivateRedis,
    assert_nothing_lost_or_doubled,
    converge,
    report,
    start_singing,
    wait_for,
)
from tests.support import session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def private_redis(uses_postgres, uses_redis):
    redis = PrivateRedis()
    redis.start()
    yield redis
    redis.stop()


async def test_a_redis_restart_loses_and_doubles_nothing_across_two_servers(daphne, lobby, make_user, private_redis):
    prefix = f"hardfault{int(time.time())}"
    env = {"REDIS_URL": private_redis.url, "CHOIR_REDIS_PREFIX": prefix}
    servers = [daphne(extra_env=env), daphne(extra_env=env)]
    choir = []
    for i in range(4):
        user = await database_sync_to_async(make_user)(f"singer{i}")
        cookie = (await database_sync_to_async(session_cookie)(user)).decode()
        port = servers[i % 2].port
        choir.append(
            Chorister(
                f"singer{i}",
                lambda after, port=port: f"ws://127.0.0.1:{port}/ws/rooms/lobby/?after={after}",
                cookie=cookie,
                to_send=60,
                pace=0.08,
            )
        )
    total = await start_singing(choir, 20)
    private_redis.stop()
    stopped_at = await total()
    await asyncio.sleep(3)
    sung_during_outage = await total() - stopped_at
    private_redis.start()

    final = await converge(choir, total, timeout=60)
    group = f"{prefix}__group__{events.group_name(lobby.pk)}"

    async def both_servers_subscribed() -> bool:
        answer = await asyncio.to_thread(private_redis.command, "PUBSUB", "NUMSUB", group)
        return bool(answer) and answer[1] == 2

    await wait_for(both_servers_subscribed, 20, "both servers back in the room's group")
    for c in choir:
        await c.stop()
    result = report("redis-restart", choir, final, sung_during_outage=sung_during_outage)
    assert sung_during_outage > 0, "the outage did not overlap the conversation"
    assert result["total"]["lost"] == 0
    assert result["total"]["doubled"] == 0
    await assert_nothing_lost_or_doubled(choir, final)
    # Redis is not in the path of a socket: nobody was disconnected.
    assert [c.connects for c in choir] == [1, 1, 1, 1]
