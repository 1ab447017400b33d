"""Exponential backoff with jitter, for reconnects and for retried posts."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt n (0-based): half of min(cap, base * factor**n), plus up to as much again at random.

    The random half ("equal jitter") keeps many clients that lost the same
    server from coming back in one wave; the fixed half keeps a client from
    hammering a server that is still down.
    """

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * self.factor ** min(attempt, 64))
        return ceiling / 2 + random.uniform(0, ceiling / 2)
