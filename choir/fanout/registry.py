"""One hub per event loop (one per process under Daphne), found through public accessors."""

from __future__ import annotations

import asyncio
import threading

from choir.conf import settings
from choir.fanout.hub import Hub
from choir.ratelimit import SharedBuckets, TokenBucket

_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def current_hub() -> Hub:
    """The hub of the running event loop, made on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        for old in [known for known in _hubs if known.is_closed()]:
            del _hubs[old]
        hub = _hubs[loop] = Hub()
    return hub


def running_hubs() -> list[Hub]:
    """Every hub whose event loop is still open."""
    return [hub for loop, hub in list(_hubs.items()) if not loop.is_closed()]


def serving_hub() -> tuple[Hub, asyncio.AbstractEventLoop] | None:
    """The hub serving sockets in this process and its loop, seen from another thread; None if none."""
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    running = [(hub, loop) for loop, hub in list(_hubs.items()) if loop.is_running() and loop is not here]
    return running[0] if len(running) == 1 else None


async def stop_current_hub() -> None:
    """Stop and forget the running loop's hub, if it has one (tests, and the end of a loop)."""
    hub = _hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.stop()


_http_buckets: dict[str, TokenBucket] = {}
_http_lock = threading.Lock()


def take_for_http(person: str) -> float:
    """Take a frame token for a person from synchronous code (an HTTP post).

    The same budget as their sockets: the Redis bucket when Redis is
    configured; otherwise the bucket of the hub serving sockets in this
    process, taken on its loop, which owns it. A process with no hub (a test
    client, a WSGI server) keeps buckets of its own. 0.0 if allowed, else the
    seconds until a token is free.
    """
    urls = settings.CHOIR_REDIS_URLS
    if urls:
        shared = SharedBuckets(urls[0], settings.CHOIR_REDIS_PREFIX)
        return shared.take_now(person, settings.CHOIR_RATE_PER_SECOND, settings.CHOIR_RATE_BURST)
    found = serving_hub()
    if found is not None:
        hub, loop = found
        return asyncio.run_coroutine_threadsafe(hub.take(person), loop).result(timeout=10)
    with _http_lock:
        if len(_http_buckets) > 10_000:
            for key in [key for key, kept in _http_buckets.items() if kept.full()]:
                del _http_buckets[key]
        bucket = _http_buckets.get(person)
        if bucket is None:
            bucket = _http_buckets[person] = TokenBucket(settings.CHOIR_RATE_PER_SECOND, settings.CHOIR_RATE_BURST)
        return bucket.take()
