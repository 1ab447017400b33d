"""Who may take a seat and how fast they may talk: handshakes and open sockets
per address and per user, and each person's token bucket.

A person is a signed-in user, or, for guests, the client's address: a guest
could otherwise start afresh with every new connection or session. Message
buckets are shared through Redis when it is configured (choir/ratelimit.py);
handshake buckets stay in the process, since a round trip to Redis per
handshake would cost more than the handshakes they guard.
"""

from __future__ import annotations

from collections import Counter

from choir.conf import settings
from choir.ratelimit import SharedBuckets, TokenBucket


class Admission:
    """This process's open sockets per address and per user, and everyone's token bucket."""

    def __init__(self) -> None:
        self.by_ip: Counter[str] = Counter()
        self.by_user: Counter[int] = Counter()
        self.buckets: dict[str, TokenBucket] = {}  # per person; see bucket()
        self.handshakes: dict[str, TokenBucket] = {}  # per address
        urls = settings.CHOIR_REDIS_URLS
        self.shared = SharedBuckets(urls[0], settings.CHOIR_REDIS_PREFIX) if urls else None

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

    def handshake(self, client_ip: str) -> float:
        """Take a handshake token for an address: 0.0, or the seconds until one is free.

        Every handshake costs one, refused ones included, so probing for
        rooms or reconnecting in a tight loop is held to
        CHOIR_HANDSHAKE_RATE a second after a burst of CHOIR_HANDSHAKE_BURST.
        """
        bucket = self.handshakes.get(client_ip)
        if bucket is None:
            bucket = self.handshakes[client_ip] = TokenBucket(settings.CHOIR_HANDSHAKE_RATE, settings.CHOIR_HANDSHAKE_BURST)
        return bucket.take()

    async def take(self, key: str) -> float:
        """Take a frame token from a person's bucket: 0.0, or the seconds until one is free."""
        if self.shared is not None:
            return await self.shared.take(key, settings.CHOIR_RATE_PER_SECOND, settings.CHOIR_RATE_BURST)
        return self.bucket(key).take()

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
        self.handshakes = {key: bucket for key, bucket in self.handshakes.items() if not bucket.full()}
        if self.shared is not None:
            self.shared.local = {key: bucket for key, bucket in self.shared.local.items() if not bucket.full()}

