"""The process's hub: one channel-layer member per room, fanning out locally.

Stock Channels gives every socket its own channel and group membership, so a
message to a 1,000-member room is 1,000 channel-layer deliveries, each decoded
and dispatched (with a thread hop) by its own consumer. Here the process joins
each room's group once; when an event arrives it is handed, already
serialised, straight to every local seat of that room (choir/fanout/feed.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from choir import broadcast, events, metrics, protocol, tokens
from choir.conf import settings
from choir.fanout.admission import Admission
from choir.fanout.batching import PresenceBatcher
from choir.fanout.changes import echo_read
from choir.fanout.feed import Feed
from choir.fanout.rooms import RoomCache
from choir.fanout.seat import Seat, Socket
from choir.fanout.tasks import quietly
from choir.models import Room
from choir.ratelimit import TokenBucket
from choir.selectors import current_seq_rev, current_seqs_revs, room_and_members

log = logging.getLogger("choir.hub")


class Hub:
    RESYNC_EVERY = 2.0
    TOKEN_CHECK_EVERY = 10.0  # close sockets whose token expired, or whose revocation broadcast was lost
    REJOIN_EVERY = 600.0  # re-assert group membership (channels-redis expires it)

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel_name = ""
        self.feeds: dict[int, Feed] = {}
        self.rooms = RoomCache()
        self.admission = Admission()
        self.presence = PresenceBatcher(on_idle=self._drop_feed)
        self.locks: dict[int, asyncio.Lock] = {}
        self.tasks: list[asyncio.Task] = []
        self.started = False
        self.start_lock = asyncio.Lock()
        self.handlers: dict[str, Callable[[Feed, Any], Awaitable[None]]] = {
            events.MESSAGES: self.on_messages,
            events.UPDATE: self.on_update,
            events.CHANGE: self.on_change,
            events.READ: self.on_read,
            events.PRESENCE: self.on_presence,
            events.TYPING: self.on_typing,
            events.CLOSE: self.on_close,
            events.EJECT: self.on_eject,
            events.ROOM_CHANGED: self.on_room_changed,
        }

    # Lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        async with self.start_lock:
            if self.started:
                return
            self.channel_name = await self.layer.new_channel(prefix="hub.")
            await self.layer.group_add(events.EVERYWHERE, self.channel_name)
            self.tasks = [
                asyncio.ensure_future(self._receive_loop()),
                asyncio.ensure_future(self._resync_loop()),
            ]
            # This process's own messages come straight from its commits.
            broadcast.add_local_sink(asyncio.get_running_loop(), self.hear)
            self.started = True

    async def shutdown(self, code: int = protocol.Close.GOING_AWAY, reason: str = "server restarting") -> None:
        """Tell every local socket to reconnect elsewhere, then stop."""
        for feed in list(self.feeds.values()):
            for seat in list(feed.seats.values()):
                await quietly(seat.shut(code, reason))
        await self.stop()

    async def stop(self) -> None:
        """Stop the background work and let go of the presence store (sockets are left as they are)."""
        broadcast.remove_local_sink(asyncio.get_running_loop())
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for feed in self.feeds.values():
            feed.cancel_tasks()
        await self.presence.close()

    # Seats ------------------------------------------------------------------

    def admit(self, socket: Socket) -> str | None:
        """Check the per-IP and per-user connection caps; the reason if over."""
        return self.admission.refusal(socket.client_ip, socket.user_id)

    def bucket(self, key: str) -> TokenBucket:
        """The token bucket of one person, shared by all their sockets in this process."""
        return self.admission.bucket(key)

    async def take(self, key: str) -> float:
        """Take a frame token from a person's bucket (shared across processes with Redis)."""
        return await self.admission.take(key)

    def handshake(self, client_ip: str) -> float:
        """Take a handshake token for an address: 0.0, or the seconds to wait."""
        return self.admission.handshake(client_ip)

    async def join(self, room: Room, socket: Socket) -> Seat:
        """Seat a socket in its room; it is held in replay mode until `go_live`."""
        await self.start()
        feed = self.feeds.get(room.pk)
        if feed is None:
            lock = self.locks.setdefault(room.pk, asyncio.Lock())
            async with lock:
                feed = self.feeds.get(room.pk)
                if feed is None:
                    # Join the group before reading last_seq: anything stored
                    # after the read is then sure to be heard.
                    await self.layer.group_add(events.group_name(room.pk), self.channel_name)
                    last_seq, last_rev = await database_sync_to_async(current_seq_rev)(room.pk)
                    feed = self.feeds[room.pk] = Feed(room, last_seq, served=self.serves, last_rev=last_rev)
                    self.rooms.serve(room)
        seat = Seat(socket, feed)
        feed.seats[seat.conn_id] = seat
        self.admission.enter(seat.client_ip, seat.user_id)
        metrics.OPEN_SOCKETS.inc()
        metrics.ONLINE.labels(room.slug).inc()
        if feed.roster.arrive(seat.name):
            self.presence.changed(feed)
        return seat

    async def go_live(self, seat: Seat) -> None:
        """Send what arrived during the replay, then deliver live."""
        await seat.feed.go_live(seat)

    async def leave(self, seat: Seat) -> None:
        feed = seat.feed
        if feed.seats.pop(seat.conn_id, None) is None:
            return
        self.admission.leave(seat.client_ip, seat.user_id)
        metrics.OPEN_SOCKETS.dec()
        metrics.ONLINE.labels(feed.room.slug).dec()
        if feed.roster.depart(seat.name):
            self.presence.changed(feed)
        if not feed.seats:
            await self._drop_feed(feed)

    def serves(self, feed: Feed) -> bool:
        """True while `feed` is this hub's feed of its room."""
        return self.feeds.get(feed.room.pk) is feed

    async def _drop_feed(self, feed: Feed) -> None:
        room_id = feed.room.pk
        lock = self.locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            if feed.seats or self.feeds.get(room_id) is not feed:
                return
            if not self.presence.busy(feed):
                del self.feeds[room_id]
                self.rooms.forget(feed.room)
                await quietly(self.layer.group_discard(events.group_name(room_id), self.channel_name))
            # else: the pending presence flush drops the feed when done

    async def online(self, feed: Feed) -> tuple[list[str], int]:
        """Who is online in the room (at most CHOIR_ONLINE_LIST_MAX names) and how many."""
        return await self.presence.online(feed)

    async def open_room(self, slug: str) -> Room | None:
        """The room by slug, if it exists and is open, for a cookie-less guest (see RoomCache)."""
        return await self.rooms.open_room(slug)

    # Events ----------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("hub receive failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            await self.hear(event)

    async def hear(self, event: dict[str, Any]) -> None:
        """Handle one room event: from the channel layer, or first-hand from this process's commits."""
        if event.get("type") == events.TOKEN_REVOKED:
            return await self.on_token_revoked(event)  # type: ignore[arg-type]
        feed = self.feeds.get(event.get("room_id", -1))
        handler = self.handlers.get(event.get("type", ""))
        if feed is None or handler is None:
            return
        try:
            await handler(feed, event)
        except Exception:
            log.exception("hub failed to handle %s", event.get("type"))

    def on_messages(self, feed: Feed, event: events.Messages) -> Awaitable[None]:
        # The hot path: hand over the feed's coroutine rather than wrap it in another.
        return feed.hear_messages(event["items"], event.get("at"))

    async def on_update(self, feed: Feed, event: events.Update) -> None:
        await feed.to_all(event["frame"])

    def on_change(self, feed: Feed, event: events.Change) -> Awaitable[None]:
        return feed.changes.hear(event["rev"], event["frame"])

    def on_read(self, feed: Feed, event: events.Read) -> Awaitable[None]:
        return echo_read(feed, event["user_id"], event.get("origin"), event["frame"])

    def on_presence(self, feed: Feed, event: events.Presence) -> Awaitable[None]:
        return self.presence.heard(feed, event)

    async def on_typing(self, feed: Feed, event: events.Typing) -> None:
        await feed.to_all(event["frame"], skip=event.get("origin"))

    async def on_close(self, feed: Feed, event: events.Close) -> None:
        feed.room.status = Room.Status.ARCHIVED  # newcomers are refused until a reopen reloads it
        self.rooms.reload(feed.room.slug)
        for seat in list(feed.seats.values()):
            await quietly(seat.shut(event["code"], event["reason"]))

    async def on_eject(self, feed: Feed, event: events.Eject) -> None:
        for seat in list(feed.seats.values()):
            if seat.user_id == event["user_id"]:
                await quietly(seat.shut(event["code"], event["reason"]))

    async def on_token_revoked(self, event: events.TokenRevoked) -> None:
        for feed in list(self.feeds.values()):
            for seat in list(feed.seats.values()):
                if getattr(seat.socket, "token_id", None) == event["token_id"]:
                    await quietly(seat.shut(event["code"], event["reason"]))

    async def close_dead_tokens(self) -> None:
        """Close sockets whose token has expired, or was revoked while the broadcast was lost."""
        held = {
            token_id
            for feed in self.feeds.values()
            for seat in feed.seats.values()
            if (token_id := getattr(seat.socket, "token_id", None)) is not None
        }
        if held:
            dead = await database_sync_to_async(tokens.dead_among)(held)
            for token_id, reason in dead.items():
                await self.on_token_revoked(events.token_revoked(token_id, protocol.Close.UNAUTHORIZED, reason))

    async def on_room_changed(self, feed: Feed, event: events.RoomChanged) -> None:
        room, members = await database_sync_to_async(room_and_members)(feed.room.pk)
        if room is None:
            return
        self.rooms.forget(feed.room)
        self.rooms.reload(feed.room.slug)
        feed.room = room
        self.rooms.serve(room)
        if not room.is_public:
            # Made private: only members (and those who conduct every room) may
            # stay; to anyone else the room is now as missing as any other.
            for seat in list(feed.seats.values()):
                if not seat.is_staff and seat.user_id not in members:
                    await quietly(seat.shut(protocol.Close.NOT_FOUND, "no such room"))

    # Healing ---------------------------------------------------------------

    async def _resync_loop(self) -> None:
        last_rejoin = last_refresh = last_tokens = time.monotonic()
        while True:
            await asyncio.sleep(self.RESYNC_EVERY)
            self.admission.forget_full()
            if not self.feeds:
                continue
            try:
                latest = await database_sync_to_async(current_seqs_revs)(list(self.feeds))
                for room_id, (seq, rev) in latest.items():
                    feed = self.feeds.get(room_id)
                    if feed is not None and seq > feed.last_seq:
                        feed.expect(seq)
                    if feed is not None and rev > feed.changes.last_rev:
                        feed.changes.expect(rev)
                if time.monotonic() - last_refresh > settings.CHOIR_PRESENCE_TTL / 3:
                    last_refresh = time.monotonic()
                    await self.presence.refresh(self.feeds)
                if time.monotonic() - last_tokens > self.TOKEN_CHECK_EVERY:
                    last_tokens = time.monotonic()
                    await self.close_dead_tokens()
                if time.monotonic() - last_rejoin > self.REJOIN_EVERY:
                    last_rejoin = time.monotonic()
                    await self.layer.group_add(events.EVERYWHERE, self.channel_name)
                    for room_id in list(self.feeds):
                        await self.layer.group_add(events.group_name(room_id), self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("hub resync failed; will retry", exc_info=True)
