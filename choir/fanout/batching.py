"""Presence in batches: a crowd arriving at once costs one frame per batch, not one per arrival."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from choir import presence, redis_clients
from choir.conf import settings
from choir.fanout.feed import Feed
from choir.fanout.tasks import quietly, spawn


class PresenceBatcher:
    """Announces each room's arrivals and departures every BATCH seconds, and answers who is online."""

    BATCH = 0.2
    ONLINE_CACHE = 1.0

    def __init__(self, on_idle: Callable[[Feed], Awaitable[None]]) -> None:
        self.store = presence.store_for_this_process()
        self.on_idle = on_idle  # called after a flush when the room has no seats left

    def changed(self, feed: Feed) -> None:
        if feed.roster.flush_task is None:
            feed.roster.flush_task = spawn(self._flush(feed))

    def busy(self, feed: Feed) -> bool:
        """True while a flush is pending: the feed must stay until it is done."""
        return feed.roster.flush_task is not None

    async def _flush(self, feed: Feed) -> None:
        roster = feed.roster
        try:
            await asyncio.sleep(self.BATCH)
            joined, left = roster.take_changes()
            if joined or left:
                # One round trip to the store for the whole batch.
                online = await self.store.apply(feed.room.pk, added=joined, removed=left) | roster.names.keys()
                roster.set_online(online)
                roster.online_at = time.monotonic()
                # A name still connected through another process has not left.
                left = {name for name in left if name not in online}
                if joined or left:
                    await quietly(
                        presence.announce(feed.room.pk, joined=sorted(joined), left=sorted(left), online=len(online))
                    )
        finally:
            roster.flush_task = None
            if not feed.seats:
                await self.on_idle(feed)

    def heard(self, feed: Feed, joined: list[str], left: list[str]) -> None:
        """Other processes' arrivals and departures keep the cached online view current between reads."""
        feed.roster.set_online((feed.roster.online_names | set(joined)) - set(left))

    async def online(self, feed: Feed) -> tuple[list[str], int]:
        """Who is online in the room (at most CHOIR_ONLINE_LIST_MAX names) and how many."""
        roster = feed.roster
        # Read the store at most once a second per room: a crowd arriving
        # would otherwise read the whole set once per arrival.
        if time.monotonic() - roster.online_at > self.ONLINE_CACHE:
            roster.set_online(await self.store.names(feed.room.pk))
            roster.online_at = time.monotonic()
        # Kept sorted as people come and go: a crowd arriving in a big room
        # would otherwise sort the whole room once per arrival.
        ordered = roster.sorted_online()
        return ordered[: settings.CHOIR_ONLINE_LIST_MAX], len(ordered)

    async def refresh(self, feeds: dict[int, Feed]) -> None:
        """Keep this process's names from lapsing in the store; a dead process's lapse."""
        await self.store.refresh({room_id: set(feed.roster.names) for room_id, feed in feeds.items()})

    async def close(self) -> None:
        await self.store.close()
        await redis_clients.close_async_clients()
