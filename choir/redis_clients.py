"""The Redis clients Choir's own state uses (presence, the desk, health, the refusal log): one place, pooled, shared.

A synchronous client per URL serves every thread (redis-py's pool is
thread-safe). An asyncio client is bound to the event loop it was made on,
so those are kept per loop and URL; a closed loop's clients are dropped.
Each asyncio client has a blocking pool, so a burst of arrivals waits for a
connection instead of failing with MaxConnectionsError (redis-py's default pool).
"""

from __future__ import annotations

import asyncio
import threading

import redis
from redis import asyncio as aioredis

TIMEOUT = 2  # seconds, for connecting and for each command of synchronous callers (pages, probes)
ASYNC_TIMEOUT = 5
ASYNC_MAX_CONNECTIONS = 32

_lock = threading.Lock()
_sync: dict[str, redis.Redis] = {}
_async: dict[tuple[asyncio.AbstractEventLoop, str], aioredis.Redis] = {}


def sync_client(url: str) -> redis.Redis:
    """The process's synchronous client for `url`."""
    with _lock:
        client = _sync.get(url)
        if client is None:
            client = _sync[url] = redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        return client


def async_client(url: str) -> aioredis.Redis:
    """The running event loop's asyncio client for `url`."""
    loop = asyncio.get_running_loop()
    client = _async.get((loop, url))
    if client is None:
        for old in [key for key in _async if key[0].is_closed()]:
            del _async[old]
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=ASYNC_MAX_CONNECTIONS, timeout=ASYNC_TIMEOUT, socket_timeout=ASYNC_TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        client = _async[(loop, url)] = aioredis.Redis(connection_pool=pool)
    return client


async def close_async_clients() -> None:
    """Close the running loop's asyncio clients (a hub stopping, a test's loop ending)."""
    loop = asyncio.get_running_loop()
    for key in [key for key in _async if key[0] is loop]:
        await _async.pop(key).aclose()


def shard(urls: list[str], room_id: int) -> str:
    """The URL that holds a room's keys, when Choir's state is spread over several servers."""
    return urls[room_id % len(urls)]
