"""Presence in batches: a crowd arriving at once costs one frame per batch, not one per arrival.

Every process announces its own arrivals and departures every BATCH
seconds (one store round trip, one channel-layer event). What a socket is
sent depends on the room's size:

- up to CHOIR_PRESENCE_CROWD people online, each event is passed on as it
  comes: `joined` and `left` name everyone;
- beyond that (a stage, a town hall), every process sums up what it heard
  into one frame every CHOIR_PRESENCE_CROWD_EVERY seconds, naming at most
  CHOIR_PRESENCE_NAMES_MAX arrivals and departures and counting the rest
  (`joined_count`, `left_count`). Without this, N arrivals cost every one of
  N listeners a frame per batch per process: quadratic, and what held a
  100,000-listener stage to a crawl.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from choir import events, presence, protocol, redis_clients
from choir.conf import settings
from choir.fanout.feed import Feed
from choir.fanout.tasks import quietly, spawn


class PresenceBatcher:
    """Announces each room's arrivals and departures every BATCH seconds, and answers who is online."""

    BATCH = 0.2
    ONLINE_CACHE = 1.0  # a small room's whole list is re-read at most this often
    CROWD_CACHE = 30.0  # a crowd's: events keep it current between reads, and a read costs O(room)

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
            joined, left, vanished = roster.take_changes()
            if joined or left or vanished:
                # One round trip to the store for the whole batch.
                count, still = await self.store.apply(feed.room.pk, added=joined, removed=left | vanished)
                # A name still connected through another process has not left.
                left -= still
                before = roster.count
                roster.remove((left | vanished) - still)
                if count < 0:  # the store did not answer: this process's view is the best there is
                    count = roster.count
                # A crowd before or after the batch: a crowd leaving at once is summed up too.
                crowd = max(before, count) > settings.CHOIR_PRESENCE_CROWD
                if joined or left:
                    await quietly(
                        presence.announce(
                            feed.room.pk, joined=sorted(joined), left=sorted(left), online=count, crowd=crowd
                        )
                    )
        finally:
            roster.flush_task = None
            if not feed.seats:
                await self.on_idle(feed)

    async def heard(self, feed: Feed, event: events.Presence) -> None:
        """A process's batch (this one's included): keep the view current and tell the room's sockets."""
        roster = feed.roster
        joined, left = event["joined"], event["left"]
        roster.add(joined)
        roster.remove(left)
        # .get: a process of the previous release, mid-deploy, sends neither.
        online = event.get("online", roster.count)
        crowd = event.get("crowd", False) or max(online, roster.count) > settings.CHOIR_PRESENCE_CROWD
        if not crowd and roster.crowd_task is None:
            await feed.to_all(event["frame"])
            return
        names_max = settings.CHOIR_PRESENCE_NAMES_MAX
        roster.crowd_online = online
        for name in joined:
            if len(roster.crowd_joined) >= names_max:
                break
            roster.crowd_joined.append(name)
        for name in left:
            if len(roster.crowd_left) >= names_max:
                break
            roster.crowd_left.append(name)
        roster.crowd_counts[0] += len(joined)
        roster.crowd_counts[1] += len(left)
        if roster.crowd_task is None:
            roster.crowd_task = spawn(self._sum_up(feed))

    async def _sum_up(self, feed: Feed) -> None:
        roster = feed.roster
        try:
            await asyncio.sleep(settings.CHOIR_PRESENCE_CROWD_EVERY)
        finally:
            roster.crowd_task = None
            joined, left, (joined_count, left_count) = roster.crowd_joined, roster.crowd_left, roster.crowd_counts
            roster.crowd_joined, roster.crowd_left, roster.crowd_counts = [], [], [0, 0]
        if joined_count or left_count:
            frame = protocol.presence_frame(
                joined=joined,
                left=left,
                online=roster.crowd_online,
                joined_count=joined_count,
                left_count=left_count,
            )
            await feed.to_all(frame)

    async def online(self, feed: Feed) -> tuple[list[str], int]:
        """Who is online in the room (at most CHOIR_ONLINE_LIST_MAX names) and how many."""
        roster = feed.roster
        # Read the store whole now and then, to heal what events missed (a
        # process that died lapses from the store, not by an event); a crowd
        # arriving would otherwise read the whole set once per arrival.
        every = self.ONLINE_CACHE if roster.count <= settings.CHOIR_PRESENCE_CROWD else self.CROWD_CACHE
        if time.monotonic() - roster.read_at > every:
            roster.read_at = time.monotonic()
            names = await self.store.names(feed.room.pk)
            if names is not None:  # a failed read keeps the view the batches built, not an empty room
                roster.set_online(names)
        return roster.sorted_online(), roster.count

    async def refresh(self, feeds: dict[int, Feed]) -> None:
        """Keep this process's names from lapsing in the store; a dead process's lapse."""
        await self.store.refresh({room_id: set(feed.roster.names) for room_id, feed in feeds.items()})

    async def close(self) -> None:
        await self.store.close()
        await redis_clients.close_async_clients()
