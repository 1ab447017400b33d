"""Who is online in each room, across every process.

With Redis, each process keeps a sorted set per room whose members are
"<process>|<name>" scored by an expiry time it refreshes while the name is
connected; a process that dies stops refreshing and its names lapse within
CHOIR_PRESENCE_TTL seconds. Without Redis there is one process, and its own
count is the truth.
"""

from __future__ import annotations

import logging
import time
import uuid

from choir.conf import settings
from redis import asyncio as aioredis

from choir import broadcast, events, protocol

log = logging.getLogger("choir.presence")


class LocalPresence:
    def __init__(self) -> None:
        self.rooms: dict[int, set[str]] = {}

    async def apply(self, room_id: int, *, added: set[str], removed: set[str]) -> set[str]:
        """Record arrivals and departures; return who is online now."""
        names = (self.rooms.get(room_id, set()) | added) - removed
        if names:
            self.rooms[room_id] = names
        else:
            self.rooms.pop(room_id, None)
        return set(names)

    async def names(self, room_id: int) -> set[str]:
        return set(self.rooms.get(room_id, ()))

    async def refresh(self, rooms: dict[int, set[str]]) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisPresence:
    def __init__(self, urls: list[str], prefix: str) -> None:
        # A blocking pool: a burst of arrivals waits for a connection instead
        # of failing with MaxConnectionsError (redis-py's default pool).
        self.clients = [
            aioredis.Redis(
                connection_pool=aioredis.BlockingConnectionPool.from_url(
                    url, max_connections=32, timeout=5, socket_timeout=5, socket_connect_timeout=2
                )
            )
            for url in urls
        ]
        self.prefix = prefix
        self.process = uuid.uuid4().hex[:12]

    def _client(self, room_id: int) -> aioredis.Redis:
        return self.clients[room_id % len(self.clients)]

    def _key(self, room_id: int) -> str:
        return f"{self.prefix}:presence:{room_id}"

    async def apply(self, room_id: int, *, added: set[str], removed: set[str]) -> set[str]:
        """Record arrivals and departures and read who is online, in one round trip."""
        key = self._key(room_id)
        now = time.time()
        try:
            async with self._client(room_id).pipeline(transaction=False) as pipe:
                if added:
                    pipe.zadd(key, {f"{self.process}|{name}": now + settings.CHOIR_PRESENCE_TTL for name in added})
                if removed:
                    pipe.zrem(key, *(f"{self.process}|{name}" for name in removed))
                pipe.zrangebyscore(key, now, "+inf")
                members = (await pipe.execute())[-1]
        except Exception:
            log.warning("presence update failed room=%s", room_id, exc_info=True)
            return set()
        return {member.decode().split("|", 1)[1] for member in members}

    async def names(self, room_id: int) -> set[str]:
        try:
            members = await self._client(room_id).zrangebyscore(self._key(room_id), time.time(), "+inf")
        except Exception:
            log.warning("presence read failed room=%s", room_id, exc_info=True)
            return set()
        return {member.decode().split("|", 1)[1] for member in members}

    async def refresh(self, rooms: dict[int, set[str]]) -> None:
        expiry = time.time() + settings.CHOIR_PRESENCE_TTL
        for room_id, names in rooms.items():
            client = self._client(room_id)
            key = self._key(room_id)
            async with client.pipeline(transaction=False) as pipe:
                if names:
                    pipe.zadd(key, {f"{self.process}|{name}": expiry for name in names})
                pipe.zremrangebyscore(key, "-inf", time.time())
                pipe.expire(key, settings.CHOIR_PRESENCE_TTL * 2)
                await pipe.execute()

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


def store_for_this_process() -> LocalPresence | RedisPresence:
    if settings.CHOIR_REDIS_URLS:
        return RedisPresence(settings.CHOIR_REDIS_URLS, settings.CHOIR_REDIS_PREFIX)
    return LocalPresence()


async def announce(room_id: int, *, joined: list[str], left: list[str], online: int) -> None:
    frame = protocol.presence_frame(joined=joined, left=left, online=online)
    await broadcast.asend(room_id, events.presence(frame, joined, left))


async def typing(room_id: int, *, author: str, origin: str) -> None:
    await broadcast.asend(room_id, events.typing(protocol.typing_frame(author), origin))


def online_counts(room_ids: list[int]) -> dict[int, int]:
    """How many people are online per room, for pages (synchronous code)."""
    if not room_ids:
        return {}
    if settings.CHOIR_REDIS_URLS:
        import redis

        prefix = settings.CHOIR_REDIS_PREFIX
        counts: dict[int, int] = {}
        now = time.time()
        try:
            clients = [redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) for url in settings.CHOIR_REDIS_URLS]
            for room_id in room_ids:
                client = clients[room_id % len(clients)]
                members = client.zrangebyscore(f"{prefix}:presence:{room_id}", now, "+inf")
                counts[room_id] = len({member.decode().split("|", 1)[1] for member in members})
            for client in clients:
                client.close()
        except Exception:
            log.warning("presence counts unavailable", exc_info=True)
        return counts
    from choir.hub import _hubs

    counts = {}
    for hub in list(_hubs.values()):
        if isinstance(hub.presence, LocalPresence):
            for room_id in room_ids:
                counts[room_id] = counts.get(room_id, 0) + len(hub.presence.rooms.get(room_id, ()))
    return counts
