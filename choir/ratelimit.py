"""Token buckets for flood control (per socket, and per user within a process)."""

from __future__ import annotations

import time


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
