"""Who may take a seat: connection caps per address and per user, and per-person token buckets."""

from __future__ import annotations

from collections import Counter

from choir.conf import settings
from choir.ratelimit import TokenBucket


class Admission:
    """This process's open sockets per address and per user, and everyone's token bucket."""

    def __init__(self) -> None:
        self.by_ip: Counter[str] = Counter()
        self.by_user: Counter[int] = Counter()
        self.buckets: dict[str, TokenBucket] = {}  # per person; see bucket()

    def refusal(self, client_ip: str, user_id: int | None) -> str | None:
        """Check the per-IP and per-user connection caps; the reason if over."""
        if self.by_ip[client_ip] >= settings.CHOIR_MAX_CONNECTIONS_PER_IP:
            return "too many connections from your address"
        if user_id is not None and self.by_user[user_id] >= settings.CHOIR_MAX_CONNECTIONS_PER_USER:
            return "too many connections for your account"
        return None

    def enter(self, client_ip: str, user_id: int | None) -> None:
        self.by_ip[client_ip] += 1
        if user_id is not None:
            self.by_user[user_id] += 1

    def leave(self, client_ip: str, user_id: int | None) -> None:
        self.by_ip[client_ip] -= 1
        if self.by_ip[client_ip] <= 0:
            del self.by_ip[client_ip]
        if user_id is not None:
            self.by_user[user_id] -= 1
            if self.by_user[user_id] <= 0:
                del self.by_user[user_id]

    def bucket(self, key: str) -> TokenBucket:
        """The token bucket of one person, shared by all their sockets in this process.

        Kept until it has refilled (see `forget_full`), so reconnecting does
        not buy a flooder a fresh burst.
        """
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(settings.CHOIR_RATE_PER_SECOND, settings.CHOIR_RATE_BURST)
        return bucket

    def forget_full(self) -> None:
        """Drop the buckets that have refilled: forgetting them loses nothing."""
        self.buckets = {key: bucket for key, bucket in self.buckets.items() if not bucket.full()}
