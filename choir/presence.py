"""Who is online in each room, across every process.

With Redis, each room has three sorted sets, all scored by an expiry time
that their owner refreshes while it lives (so a process that dies stops
refreshing, and its people lapse within CHOIR_PRESENCE_TTL seconds):

- `…:presence:<room>`: "<process>|<name>", one entry per name per process;
- `…:presence-names:<room>`: each name once, scored by its latest expiry,
  so the count of distinct names is one ZCOUNT however big the room;
- `…:presence-procs:<room>`: the processes holding anyone in the room.

Arrivals and departures are applied by one script in one round trip, which
answers with the count and with which of the departed names are still held
by another live process. Nothing on the hot path reads a whole room: a crowd
of 100,000 would otherwise cost a 100,000-name read per batch.

Without Redis there is one process, and its own count is the truth.

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

    async def apply(self, room_id: int, *, added: set[str], removed: set[str]) -> tuple[int, set[str]]:
        """Record arrivals and departures: (how many are online now, the departed still online elsewhere)."""
        names = self.rooms.setdefault(room_id, set())
        names |= added
        names -= removed
        if not names:
            del self.rooms[room_id]
        return len(names), set()

    async def names(self, room_id: int) -> set[str] | None:
        return set(self.rooms.get(room_id, ()))

    async def refresh(self, rooms: dict[int, set[str]]) -> None:
        return None

    async def close(self) -> None:
        _local_stores.discard(self)


def _keys(prefix: str, room_id: int) -> list[str]:
    return [f"{prefix}:presence:{room_id}", f"{prefix}:presence-names:{room_id}", f"{prefix}:presence-procs:{room_id}"]


# KEYS: the per-process entries, the names, the processes (see the module docstring).
# ARGV: now, expiry, key lifetime (ms), this process, how many names were added, the added, the removed.
# Returns {online count, the removed names another live process still holds}.
_APPLY = """
local now, expiry, me, nadd = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[4], tonumber(ARGV[5])
redis.call('ZADD', KEYS[3], expiry, me)
for i = 6, 5 + nadd do
  local name = ARGV[i]
  redis.call('ZADD', KEYS[1], expiry, me .. '|' .. name)
  local s = redis.call('ZSCORE', KEYS[2], name)
  if not s or tonumber(s) < expiry then redis.call('ZADD', KEYS[2], expiry, name) end
end
local holders = redis.call('ZRANGEBYSCORE', KEYS[3], now, '+inf')
local still = {}
for i = 6 + nadd, #ARGV do
  local name = ARGV[i]
  redis.call('ZREM', KEYS[1], me .. '|' .. name)
  local held = false
  for _, p in ipairs(holders) do
    if p ~= me then
      local s = redis.call('ZSCORE', KEYS[1], p .. '|' .. name)
      if s and tonumber(s) > now then held = true; break end
    end
  end
  if held then table.insert(still, name) else redis.call('ZREM', KEYS[2], name) end
end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[3]) end
return {redis.call('ZCOUNT', KEYS[2], now, '+inf'), still}
"""

# Same KEYS; ARGV: now, expiry, key lifetime (ms), this process, then the names it holds.
_REFRESH = """
local now, expiry, me = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[4]
redis.call('ZADD', KEYS[3], expiry, me)
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[1], expiry, me .. '|' .. ARGV[i])
  local s = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if not s or tonumber(s) < expiry then redis.call('ZADD', KEYS[2], expiry, ARGV[i]) end
end
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('PEXPIRE', key, ARGV[3])
end
return 0
"""


class RedisPresence:
    def __init__(self, urls: list[str], prefix: str) -> None:
        self.urls = urls
        self.prefix = prefix
        self.process = uuid.uuid4().hex[:12]

    def _client(self, room_id: int):  # -> redis.asyncio.Redis
        return redis_clients.async_client(redis_clients.shard(self.urls, room_id))

    def _times(self) -> tuple[float, float, int]:
        now = time.time()
        return now, now + settings.CHOIR_PRESENCE_TTL, settings.CHOIR_PRESENCE_TTL * 2000

    async def apply(self, room_id: int, *, added: set[str], removed: set[str]) -> tuple[int, set[str]]:
        """Record arrivals and departures: (how many are online now, the departed still online elsewhere)."""
        now, expiry, lifetime = self._times()
        try:
            count, still = await self._client(room_id).eval(
                _APPLY, 3, *_keys(self.prefix, room_id), now, expiry, lifetime, self.process, len(added), *added, *removed
            )
        except Exception:
            log.warning("presence update failed room=%s", room_id, exc_info=True)
            return -1, set()
        return int(count), {name.decode() for name in still}

    async def names(self, room_id: int) -> set[str] | None:
        """Everyone online in the room, or None when the store did not answer."""
        try:
            members = await self._client(room_id).zrangebyscore(_keys(self.prefix, room_id)[1], time.time(), "+inf")
        except Exception:
            log.warning("presence read failed room=%s", room_id, exc_info=True)
            return None
        return {member.decode() for member in members}

    async def refresh(self, rooms: dict[int, set[str]]) -> None:
        now, expiry, lifetime = self._times()
        for room_id, names in rooms.items():
            await self._client(room_id).eval(
                _REFRESH, 3, *_keys(self.prefix, room_id), now, expiry, lifetime, self.process, *names
            )

    async def close(self) -> None:
        # The clients are shared (choir.redis_clients); the loop's owner closes them.
        return None


def store_for_this_process() -> LocalPresence | RedisPresence:
    if settings.CHOIR_REDIS_URLS:
        return RedisPresence(settings.CHOIR_REDIS_URLS, settings.CHOIR_REDIS_PREFIX)
    return LocalPresence()


async def announce(room_id: int, *, joined: list[str], left: list[str], online: int, crowd: bool = False) -> None:
    """Tell every process of a batch of arrivals and departures (in a crowd, each sums them up for its sockets)."""
    frame = protocol.presence_frame(joined=joined, left=left, online=online)
    await broadcast.asend(room_id, events.presence(frame, joined, left, online, crowd))


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
                    _keys(prefix, room_id)[1], now, "+inf"
                )
                found[room_id] = {member.decode() for member in members}
        except Exception:
            log.warning("presence unavailable", exc_info=True)
    else:
        for store in list(_local_stores):
            for room_id in room_ids:
                found[room_id] |= store.rooms.get(room_id, set())
    return {room_id: sorted(names, key=str.casefold) for room_id, names in found.items()}


def online_counts(room_ids: list[int]) -> dict[int, int]:
    """How many people are online per room (with Redis, one ZCOUNT per room, never a read of the names)."""
    urls = settings.CHOIR_REDIS_URLS
    if not urls:
        return {room_id: len(names) for room_id, names in online(room_ids).items()}
    counts = dict.fromkeys(room_ids, 0)
    now = time.time()
    try:
        for room_id in room_ids:
            key = _keys(settings.CHOIR_REDIS_PREFIX, room_id)[1]
            counts[room_id] = redis_clients.sync_client(redis_clients.shard(urls, room_id)).zcount(key, now, "+inf")
    except Exception:
        log.warning("presence unavailable", exc_info=True)
    return counts
