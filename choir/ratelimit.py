"""Token buckets for flood control: in this process, or shared through Redis.

A person's bucket (a user, or a guest's address) holds CHOIR_RATE_BURST
tokens and refills at CHOIR_RATE_PER_SECOND; every frame takes one. Without
Redis there is one process and its buckets are the truth. With Redis the
bucket lives there, so reconnecting to another process, or opening sockets on
several, buys a flooder nothing.

Our own code rather than a rate-limit library: the socket needs a token
bucket's burst-then-rate shape and the exact wait (`retry_after`), per frame,
in-process without an await on the embedded default; the shared bucket is one
atomic script, one round trip, with Redis' own clock so processes on
machines whose clocks differ agree.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

from choir import redis_clients

log = logging.getLogger("choir.ratelimit")


class TokenBucket:
    """`rate` tokens a second, holding at most `burst`; each frame takes one."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self, now: float | None = None) -> float:
        """Take a token: 0.0 if allowed, else the seconds until one is free."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def full(self, now: float | None = None) -> bool:
        """True when the bucket has refilled: forgetting it then loses nothing."""
        now = time.monotonic() if now is None else now
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


# KEYS[1] the bucket; ARGV rate, burst. Returns the wait in seconds as a string ("0" = allowed).
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class SharedBuckets:
    """Token buckets kept in Redis, one key per person, shared by every process."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.local: dict[str, TokenBucket] = {}  # used while Redis does not answer

    async def take(self, key: str, rate: float, burst: int) -> float:
        client = redis_clients.async_client(self.url)
        try:
            return float(await client.eval(_TAKE, 1, f"{self.prefix}:bucket:{key}", rate, burst))
        except RedisError:
            # Limits must not take the room down with Redis: this process's
            # own bucket holds the line until Redis is back.
            log.warning("shared rate limit unavailable; limiting in this process", exc_info=True)
            bucket = self.local.get(key)
            if bucket is None:
                bucket = self.local[key] = TokenBucket(rate, burst)
            return bucket.take()

    def take_now(self, key: str, rate: float, burst: int) -> float:
        """`take` from synchronous code (an HTTP view on a worker thread): the same bucket."""
        client = redis_clients.sync_client(self.url)
        try:
            return float(client.eval(_TAKE, 1, f"{self.prefix}:bucket:{key}", rate, burst))
        except RedisError:
            log.warning("shared rate limit unavailable; limiting in this process", exc_info=True)
            bucket = self.local.get(key)
            if bucket is None:
                bucket = self.local[key] = TokenBucket(rate, burst)
            return bucket.take()
