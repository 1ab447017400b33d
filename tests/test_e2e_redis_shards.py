"""Beyond one machine Choir scales on Redis: channels-redis shards rooms over several hosts."""

import asyncio
import json

import pytest
import websockets

from choir import services
from tests.chorus import PrivateRedis
from tests.support import ws_frames

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOMS = [f"shard-{i}" for i in range(12)]  # all on one of two shards: 1 chance in 2,048


@pytest.fixture
def two_shards():
    shards = [PrivateRedis(), PrivateRedis()]
    for shard in shards:
        shard.start()
    yield shards
    for shard in shards:
        shard.stop()


async def test_rooms_spread_over_two_redis_shards_and_every_message_arrives(daphne, server_env, two_shards, uses_postgres):
    from channels.db import database_sync_to_async

    for slug in ROOMS:
        await database_sync_to_async(services.room_create)(slug=slug, title=slug, guests_may_post=True, actor=services.SYSTEM)
    urls = ",".join(shard.url for shard in two_shards)
    first = daphne(extra_env={"REDIS_URL": urls, "CHOIR_REDIS_PREFIX": "shards"})
    second = daphne(extra_env={"REDIS_URL": urls, "CHOIR_REDIS_PREFIX": "shards"})
    clients = {}
    for slug in ROOMS:
        # One listener on each server per room, so every message crosses Redis.
        pair = [await websockets.connect(server.ws(slug)) for server in (first, second)]
        for ws in pair:
            assert json.loads(await ws.recv())["type"] == "hello"
        clients[slug] = pair
    for slug, (sender, _) in clients.items():
        for i in range(5):
            await sender.send(json.dumps({"type": "say", "body": f"{slug} {i}", "client_id": f"{slug}-{i}"}))
    for slug, pair in clients.items():
        for ws in pair:
            frames = await ws_frames(ws, 5)
            assert [f["body"] for f in frames] == [f"{slug} {i}" for i in range(5)]
            assert [f["seq"] for f in frames] == [1, 2, 3, 4, 5]
    # Both shards carry some of the rooms' groups.
    for shard in two_shards:
        channels = shard.command("PUBSUB", "CHANNELS", "*")
        assert any("__group__room." in name for name in channels), channels
    for pair in clients.values():
        for ws in pair:
            await ws.close()
    await asyncio.sleep(0)
