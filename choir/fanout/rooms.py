"""Rooms by slug for cookie-less guests' handshakes, without a database read per handshake."""

from __future__ import annotations

import asyncio
import time

from channels.db import database_sync_to_async

from choir.conf import settings
from choir.models import Room
from choir.selectors import room_by_slug


class RoomCache:
    """The rooms this process serves, by slug, and the room reads in flight."""

    LOAD_TTL = 0.5
    MISSES_KEPT = 10_000  # bounded: a prober sending endless slugs cannot grow it without limit

    def __init__(self) -> None:
        self.served: dict[str, Room] = {}  # kept fresh by room.changed / room.close
        self.loads: dict[str, asyncio.Future] = {}
        self.misses: dict[str, float] = {}  # slug -> when it was found missing (monotonic)

    def missing(self, slug: str) -> bool:
        """Whether `slug` was looked up and not found a moment ago (CHOIR_ROOM_MISS_SECONDS)."""
        seen = self.misses.get(slug)
        if seen is None:
            return False
        if time.monotonic() - seen < settings.CHOIR_ROOM_MISS_SECONDS:
            return True
        del self.misses[slug]
        return False

    def note_missing(self, slug: str) -> None:
        """Remember a slug with no room, so repeating the handshake costs no database read."""
        if len(self.misses) >= self.MISSES_KEPT:
            self.misses.clear()
        self.misses[slug] = time.monotonic()

    def serve(self, room: Room) -> None:
        self.served[room.slug] = room
        self.misses.pop(room.slug, None)

    def forget(self, room: Room) -> None:
        """Stop answering from memory for this room (it changed, or nobody is left here)."""
        if self.served.get(room.slug) is room:
            del self.served[room.slug]

    def reload(self, slug: str) -> None:
        """Drop a read in flight or just landed: the room changed under it."""
        self.loads.pop(slug, None)

    async def open_room(self, slug: str) -> Room | None:
        """The room by slug, if it exists and is open.

        A room this process serves is in memory; otherwise one database read
        serves every handshake that arrives for it at once, as when a crowd
        floods into a room nobody was in.
        """
        room = self.served.get(slug)
        if room is not None and room.is_open:
            return room
        if self.missing(slug):
            return None
        pending = self.loads.get(slug)
        if pending is None:
            pending = self.loads[slug] = asyncio.ensure_future(database_sync_to_async(room_by_slug)(slug))
            # Kept a moment after it lands, to serve the rest of the crowd
            # until the first of them has made the room's feed.
            pending.add_done_callback(
                lambda _: asyncio.get_running_loop().call_later(self.LOAD_TTL, self.loads.pop, slug, None)
            )
        room = await asyncio.shield(pending)
        if room is None:
            self.note_missing(slug)
        return room if room is not None and room.is_open else None
