"""Token buckets for flood control (per socket, and per user within a process)."""

from __future__ import annotations

import concurrent.futures
import threading
import time

from choir.conf import settings


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


_local_buckets: dict[str, TokenBucket] = {}
_local_lock = threading.Lock()


def take(person: str) -> float:
    """Take a token from one person's bucket, from synchronous code (an HTTP view).

    Under Daphne this is the very bucket the person's sockets in this process
    draw from (the hub's, see Hub.bucket), so posting over HTTP and over a
    socket share one budget; it is taken on the hub's event loop, which owns
    the buckets. A process with no hub running (a WSGI server, a test client)
    keeps buckets of its own. Limits are per process, as on the socket: the
    one shared limit is slow mode, which the posting service checks in the
    database. Returns 0.0 if allowed, else seconds until a token is free.
    """
    from choir import broadcast

    loop = broadcast.serving_loop()
    if loop is None:
        with _local_lock:
            if len(_local_buckets) > 10_000:
                for key in [key for key, kept in _local_buckets.items() if kept.full()]:
                    del _local_buckets[key]
            bucket = _local_buckets.get(person)
            if bucket is None:
                bucket = _local_buckets[person] = TokenBucket(settings.CHOIR_RATE_PER_SECOND, settings.CHOIR_RATE_BURST)
            return bucket.take()
    answer: concurrent.futures.Future[float] = concurrent.futures.Future()

    def on_the_loop() -> None:
        from choir.hub import get_hub

        try:
            answer.set_result(get_hub().bucket(person).take())
        except Exception as exc:  # handed to the caller's thread
            answer.set_exception(exc)

    loop.call_soon_threadsafe(on_the_loop)
    return answer.result(timeout=10)
