"""Who is online in each room, across every process.

With Redis, each process keeps a sorted set per room whose members are
"<process>|<name>" scored by an expiry time it refreshes while the name is
connected; a process that dies stops refreshing and its names lapse within
CHOIR_PRESENCE_TTL seconds. Without Redis there is one process, and its own
count is the truth.

Writes come from the fan-out's presence batching (choir/fanout/batching.py);
pages, the admin and the desk read through `online` and `online_counts`.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref

from choir import broadcast, events, protocol, redis_clients
from choir.conf import settings

log = logging.getLogger("choir.presence")

# This process's in-memory stores (one per hub: one per event loop), read by `online`.
_local_stores: weakref.WeakSet[LocalPresence] = weakref.WeakSet()


class LocalPresence:
    def __init__(self) -> None:
        self.rooms: dict[int, set[str]] = {}
        _local_stores.add(self)

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
        _local_stores.discard(self)


def _key(prefix: str, room_id: int) -> str:
    return f"{prefix}:presence:{room_id}"


def _name(member: bytes) -> str:
    return member.decode().split("|", 1)[1]


class RedisPresence:
    def __init__(self, urls: list[str], prefix: str) -> None:
        self.urls = urls
        self.prefix = prefix
        self.process = uuid.uuid4().hex[:12]

    def _client(self, room_id: int):  # -> redis.asyncio.Redis
        return redis_clients.async_client(redis_clients.shard(self.urls, room_id))

    async def apply(self, room_id: int, *, added: set[str], removed: set[str]) -> set[str]:
        """Record arrivals and departures and read who is online, in one round trip."""
        key = _key(self.prefix, room_id)
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
        return {_name(member) for member in members}

    async def names(self, room_id: int) -> set[str]:
        try:
            members = await self._client(room_id).zrangebyscore(_key(self.prefix, room_id), time.time(), "+inf")
        except Exception:
            log.warning("presence read failed room=%s", room_id, exc_info=True)
            return set()
        return {_name(member) for member in members}

    async def refresh(self, rooms: dict[int, set[str]]) -> None:
        expiry = time.time() + settings.CHOIR_PRESENCE_TTL
        for room_id, names in rooms.items():
            key = _key(self.prefix, room_id)
            async with self._client(room_id).pipeline(transaction=False) as pipe:
                if names:
                    pipe.zadd(key, {f"{self.process}|{name}": expiry for name in names})
                pipe.zremrangebyscore(key, "-inf", time.time())
                pipe.expire(key, settings.CHOIR_PRESENCE_TTL * 2)
                await pipe.execute()

    async def close(self) -> None:
        # The clients are shared (choir.redis_clients); the loop's owner closes them.
        return None


def store_for_this_process() -> LocalPresence | RedisPresence:
    if settings.CHOIR_REDIS_URLS:
        return RedisPresence(settings.CHOIR_REDIS_URLS, settings.CHOIR_REDIS_PREFIX)
    return LocalPresence()


async def announce(room_id: int, *, joined: list[str], left: list[str], online: int) -> None:
    frame = protocol.presence_frame(joined=joined, left=left, online=online)
    await broadcast.asend(room_id, events.presence(frame, joined, left))


async def typing(room_id: int, *, author: str, origin: str) -> None:
    await broadcast.asend(room_id, events.typing(protocol.typing_frame(author), origin))


# Reads for synchronous code (pages, admin, the desk) ----------------------------


def online(room_ids: list[int]) -> dict[int, list[str]]:
    """Who is online per room, sorted, as the presence store has it; empty lists when it cannot be read."""
    found: dict[int, set[str]] = {room_id: set() for room_id in room_ids}
    if not room_ids:
        return {}
    urls = settings.CHOIR_REDIS_URLS
    if urls:
        now = time.time()
        prefix = settings.CHOIR_REDIS_PREFIX
        try:
            for room_id in room_ids:
                members = redis_clients.sync_client(redis_clients.shard(urls, room_id)).zrangebyscore(
                    _key(prefix, room_id), now, "+inf"
                )
                found[room_id] = {_name(member) for member in members}
        except Exception:
            log.warning("presence unavailable", exc_info=True)
    else:
        for store in list(_local_stores):
            for room_id in room_ids:
                found[room_id] |= store.rooms.get(room_id, set())
    return {room_id: sorted(names, key=str.casefold) for room_id, names in found.items()}


def online_counts(room_ids: list[int]) -> dict[int, int]:
    """How many people are online per room."""
    return {room_id: len(names) for room_id, names in online(room_ids).items()}
