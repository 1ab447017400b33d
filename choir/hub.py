"""The process's hub: one channel-layer member per room, fanning out locally.

Stock Channels gives every socket its own channel and group membership, so a
message to a 1,000-member room is 1,000 channel-layer deliveries, each decoded
and dispatched (with a thread hop) by its own consumer. Here the process joins
each room's group once; when an event arrives it is handed, already
serialised, straight to every local socket of that room.

The hub also keeps each room's messages in seq order for its sockets. Events
from several processes can arrive out of order, and a broadcast can be lost
(Redis restarting): a hub that sees a gap waits `CHOIR_GAP_WAIT` seconds for
the missing seqs, then reads them from the database, and it compares its
rooms with the database every `CHOIR_HUB_RESYNC` seconds, so a message that
was stored always reaches every socket, in order, exactly once.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import logging
import time
from collections import Counter
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from choir.conf import settings

from choir import events, metrics, presence, protocol
from choir.models import Room
from choir.ratelimit import TokenBucket
from choir.selectors import changes_between, message_range
from choir.wire import Outgoing
from choir.writer import Writer

log = logging.getLogger("choir.hub")


class Listener(Protocol):
    """What the hub needs of a socket (RoomConsumer implements it)."""

    conn_id: str
    user_id: int | None
    is_staff: bool
    name: str
    client_ip: str
    cursor: int  # highest seq written to this socket
    rev: int  # highest change rev written to this socket
    # Frames held while it replays, None once live: (seq, frame) for a
    # message, (-rev, frame) for a change, (0, frame) for anything else.
    backlog: list[tuple[int, str]] | None
    base_send: Any
    wire: Any  # Daphne's autobahn protocol object, or None (see choir/wire.py)

    async def shut(self, code: int, reason: str) -> None: ...


class Feed:
    """One room as seen by this process: its local sockets and its seq order."""

    __slots__ = (
        "room", "listeners", "last_seq", "pending", "known_seq", "gap_task",
        "names", "joined", "left", "flush_task", "online_names", "online_at", "roster",
        "last_rev", "pending_changes", "known_rev", "rev_gap_task",
    )

    def __init__(self, room: Room, last_seq: int, last_rev: int = 0) -> None:
        self.room = room
        self.listeners: dict[str, Listener] = {}
        self.last_seq = last_seq  # highest seq delivered here in order
        self.pending: dict[int, str] = {}  # frames that arrived ahead of a gap
        self.known_seq = last_seq  # highest seq known to exist
        self.gap_task: asyncio.Task | None = None
        self.names: Counter[str] = Counter()  # local sockets per display name
        self.joined: set[str] = set()  # presence changes not yet announced
        self.left: set[str] = set()
        self.flush_task: asyncio.Task | None = None
        self.online_names: set[str] = set()  # the presence store's view, cached briefly
        self.online_at = -1e9
        self.roster: list[str] | None = None  # online_names and names, sorted; None = rebuild
        # Changes (edits, deletes, reactions) are kept in rev order the same way.
        self.last_rev = last_rev
        self.pending_changes: dict[int, str] = {}
        self.known_rev = last_rev
        self.rev_gap_task: asyncio.Task | None = None

    def set_online(self, names: set[str]) -> None:
        self.online_names = names
        self.roster = None

    def sorted_online(self) -> list[str]:
        """Everyone online here or elsewhere, sorted; kept up to date, not re-sorted, as locals come and go."""
        if self.roster is None:
            self.roster = sorted(self.online_names | self.names.keys(), key=str.casefold)
        return self.roster

    def local_arrived(self, name: str) -> None:
        if self.roster is not None and name not in self.online_names:
            bisect.insort(self.roster, name, key=str.casefold)

    def local_gone(self, name: str) -> None:
        if self.roster is not None and name not in self.online_names:
            folded = name.casefold()
            at = bisect.bisect_left(self.roster, folded, key=str.casefold)
            while at < len(self.roster) and self.roster[at].casefold() == folded:
                if self.roster[at] == name:
                    del self.roster[at]
                    return
                at += 1


class Hub:
    RESYNC_EVERY = 2.0
    REJOIN_EVERY = 600.0  # re-assert group membership (channels-redis expires it)
    PRESENCE_BATCH = 0.2

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel_name = ""
        self.feeds: dict[int, Feed] = {}
        self.by_slug: dict[str, Feed] = {}
        self._room_loads: dict[str, asyncio.Future] = {}
        self.by_ip: Counter[str] = Counter()
        self.by_user: Counter[int] = Counter()
        self.buckets: dict[str, TokenBucket] = {}  # per person; see bucket()
        self.presence = presence.store_for_this_process()
        self.writer = Writer()
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task] = []
        self._started = False
        self._start_lock = asyncio.Lock()
        self._handlers = {
            events.MESSAGES: self._on_messages,
            events.UPDATE: self._on_update,
            events.CHANGE: self._on_change,
            events.READ: self._on_read,
            events.PRESENCE: self._on_presence,
            events.TYPING: self._on_typing,
            events.CLOSE: self._on_close,
            events.EJECT: self._on_eject,
            events.ROOM_CHANGED: self._on_room_changed,
        }

    # Lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            self.channel_name = await self.layer.new_channel(prefix="hub.")
            self._tasks = [
                asyncio.ensure_future(self._receive_loop()),
                asyncio.ensure_future(self._resync_loop()),
            ]
            self._started = True

    async def shutdown(self, code: int = protocol.Close.GOING_AWAY, reason: str = "server restarting") -> None:
        """Tell every local socket to reconnect elsewhere, then stop."""
        for feed in list(self.feeds.values()):
            for listener in list(feed.listeners.values()):
                await _quietly(listener.shut(code, reason))
        for task in self._tasks:
            task.cancel()
        await self.presence.close()

    # Membership -------------------------------------------------------------

    def admit(self, listener: Listener) -> str | None:
        """Check the per-IP and per-user connection caps; reason if over."""
        if self.by_ip[listener.client_ip] >= settings.CHOIR_MAX_CONNECTIONS_PER_IP:
            return "too many connections from your address"
        if listener.user_id is not None and self.by_user[listener.user_id] >= settings.CHOIR_MAX_CONNECTIONS_PER_USER:
            return "too many connections for your account"
        return None

    def bucket(self, key: str) -> TokenBucket:
        """The token bucket of one person, shared by all their sockets in this process.

        Kept until it has refilled (see the resync loop), so reconnecting does
        not buy a flooder a fresh burst.
        """
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(settings.CHOIR_RATE_PER_SECOND, settings.CHOIR_RATE_BURST)
        return bucket

    async def join(self, room: Room, listener: Listener) -> Feed:
        """Add a socket to its room; it is held in replay mode until `go_live`."""
        await self.start()
        feed = self.feeds.get(room.pk)
        if feed is None:
            lock = self._locks.setdefault(room.pk, asyncio.Lock())
            async with lock:
                feed = self.feeds.get(room.pk)
                if feed is None:
                    # Join the group before reading last_seq: anything stored
                    # after the read is then sure to be heard.
                    await self.layer.group_add(events.group_name(room.pk), self.channel_name)
                    last_seq, last_rev = await database_sync_to_async(_current_seq)(room.pk)
                    feed = self.feeds[room.pk] = Feed(room, last_seq, last_rev)
                    self.by_slug[room.slug] = feed
        listener.backlog = []
        feed.listeners[listener.conn_id] = listener
        self.by_ip[listener.client_ip] += 1
        if listener.user_id is not None:
            self.by_user[listener.user_id] += 1
        metrics.OPEN_SOCKETS.inc()
        metrics.ONLINE.labels(room.slug).inc()
        feed.names[listener.name] += 1
        if feed.names[listener.name] == 1:
            feed.local_arrived(listener.name)
            self._presence_changed(feed, joined=listener.name)
        return feed

    async def go_live(self, feed: Feed, listener: Listener) -> None:
        """Send what arrived during the replay, then deliver live."""
        backlog, listener.backlog = listener.backlog or [], None
        for seq, frame in backlog:
            if seq < 0:
                # A change: skip those the replay already gave (rev <= listener.rev).
                if -seq > listener.rev:
                    listener.rev = -seq
                    await _write(listener, Outgoing(frame))
            elif seq == 0 or seq > listener.cursor:
                listener.cursor = max(listener.cursor, seq)
                await _write(listener, Outgoing(frame))

    async def leave(self, feed: Feed, listener: Listener) -> None:
        if feed.listeners.pop(listener.conn_id, None) is None:
            return
        self.by_ip[listener.client_ip] -= 1
        if self.by_ip[listener.client_ip] <= 0:
            del self.by_ip[listener.client_ip]
        if listener.user_id is not None:
            self.by_user[listener.user_id] -= 1
            if self.by_user[listener.user_id] <= 0:
                del self.by_user[listener.user_id]
        metrics.OPEN_SOCKETS.dec()
        metrics.ONLINE.labels(feed.room.slug).dec()
        feed.names[listener.name] -= 1
        if feed.names[listener.name] <= 0:
            del feed.names[listener.name]
            feed.local_gone(listener.name)
            self._presence_changed(feed, left=listener.name)
        if not feed.listeners:
            await self._drop_feed(feed)

    async def _drop_feed(self, feed: Feed) -> None:
        room_id = feed.room.pk
        lock = self._locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            if feed.listeners or self.feeds.get(room_id) is not feed:
                return
            if feed.flush_task is None:
                del self.feeds[room_id]
                if self.by_slug.get(feed.room.slug) is feed:
                    del self.by_slug[feed.room.slug]
                await _quietly(self.layer.group_discard(events.group_name(room_id), self.channel_name))
            # else: the pending presence flush drops the feed when done

    ONLINE_CACHE = 1.0

    async def online(self, feed: Feed) -> tuple[list[str], int]:
        """Who is online in the room (at most CHOIR_ONLINE_LIST_MAX names) and how many."""
        # Read the store at most once a second per room: a crowd arriving
        # would otherwise read the whole set once per arrival.
        if time.monotonic() - feed.online_at > self.ONLINE_CACHE:
            feed.set_online(await self.presence.names(feed.room.pk))
            feed.online_at = time.monotonic()
        # Kept sorted as people come and go: a crowd arriving in a big room
        # would otherwise sort the whole room once per arrival.
        ordered = feed.sorted_online()
        return ordered[: settings.CHOIR_ONLINE_LIST_MAX], len(ordered)

    ROOM_LOAD_TTL = 0.5

    async def open_room(self, slug: str) -> Room | None:
        """The room by slug, if it exists and is open, for a cookie-less guest.

        A room this process serves is in memory (kept fresh by room.changed);
        otherwise one database read serves every handshake that arrives for
        it at once, as when a crowd floods into a room nobody was in.
        """
        feed = self.by_slug.get(slug)
        if feed is not None and feed.room.is_open:
            return feed.room
        pending = self._room_loads.get(slug)
        if pending is None:
            pending = self._room_loads[slug] = asyncio.ensure_future(database_sync_to_async(_room_by_slug)(slug))
            # Kept a moment after it lands, to serve the rest of the crowd
            # until the first of them has made the room's feed.
            pending.add_done_callback(
                lambda _: asyncio.get_running_loop().call_later(self.ROOM_LOAD_TTL, self._room_loads.pop, slug, None)
            )
        room = await asyncio.shield(pending)
        return room if room is not None and room.is_open else None

    # Delivery --------------------------------------------------------------

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

    async def hear(self, event: events.Event) -> None:
        """Handle one room event: from the channel layer, or first-hand from this process's commits."""
        feed = self.feeds.get(event.get("room_id", -1))
        handler = self._handlers.get(event.get("type"))
        if feed is None or handler is None:
            return
        try:
            await handler(feed, event)
        except Exception:
            log.exception("hub failed to handle %s", event.get("type"))

    async def _on_messages(self, feed: Feed, event: events.Event) -> None:
        # A batch stored in one transaction arrives as one event; what can go
        # out in seq order now is written to each socket in one write.
        run: list[tuple[int, str]] = []
        for seq, frame in event["items"]:
            if seq <= feed.last_seq + len(run):
                continue
            if seq == feed.last_seq + len(run) + 1:
                run.append((seq, frame))
                while (early := feed.pending.pop(seq + 1, None)) is not None:
                    seq += 1
                    run.append((seq, early))
            else:
                feed.pending[seq] = frame
                self.expect(feed, seq)
        if run:
            await self._deliver(feed, run)
            if "at" in event:
                metrics.BROADCAST_LATENCY.observe(max(time.time() - event["at"], 0))

    async def _deliver(self, feed: Feed, run: list[tuple[int, str]]) -> None:
        """Write consecutive messages (last_seq + 1, …) to every live socket, in order."""
        feed.last_seq = run[-1][0]
        if feed.last_seq > feed.known_seq:
            feed.known_seq = feed.last_seq
        outgoing = [(seq, Outgoing(frame)) for seq, frame in run]
        whole = None
        delivered = 0
        for listener in list(feed.listeners.values()):
            if listener.backlog is not None:
                listener.backlog.extend(run)
                continue
            fresh = outgoing if run[0][0] > listener.cursor else [(s, o) for s, o in outgoing if s > listener.cursor]
            if not fresh:
                continue
            listener.cursor = fresh[-1][0]
            delivered += len(fresh)
            if listener.wire is not None:
                # The hot path: no await, frames encoded and framed once.
                if fresh is outgoing:
                    whole = whole if whole is not None else Outgoing.joined([o for _, o in outgoing])
                    Outgoing.write_bytes(listener.wire, whole)
                else:
                    Outgoing.write_bytes(listener.wire, Outgoing.joined([o for _, o in fresh]))
            else:
                for _, out in fresh:
                    await _quietly(listener.base_send(out.message))
        metrics.FRAMES_DELIVERED.inc(delivered)

    async def _drain(self, feed: Feed) -> None:
        run = []
        while (frame := feed.pending.pop(feed.last_seq + len(run) + 1, None)) is not None:
            run.append((feed.last_seq + len(run) + 1, frame))
        if run:
            await self._deliver(feed, run)
        feed.pending = {s: f for s, f in feed.pending.items() if s > feed.last_seq}

    def expect(self, feed: Feed, seq: int) -> None:
        """Note that `seq` exists; if it is not delivered soon, fetch it."""
        if seq > feed.known_seq:
            feed.known_seq = seq
        if feed.known_seq > feed.last_seq and (feed.gap_task is None or feed.gap_task.done()):
            feed.gap_task = _spawn(self._fill_gap(feed))

    async def _fill_gap(self, feed: Feed) -> None:
        await asyncio.sleep(settings.CHOIR_GAP_WAIT)
        while feed.known_seq > feed.last_seq and self.feeds.get(feed.room.pk) is feed:
            first, last = feed.last_seq + 1, feed.known_seq
            try:
                rows = await database_sync_to_async(message_range)(feed.room.pk, feed.room.slug, first, last)
            except Exception:
                log.warning("gap fill %s..%s in room %s failed; retrying", first, last, feed.room.pk, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            metrics.GAP_FILLS.inc()
            run = []
            for row in rows:
                if row["seq"] == feed.last_seq + len(run) + 1:
                    feed.pending.pop(row["seq"], None)
                    run.append((row["seq"], protocol.encode(row)))
            if run:
                await self._deliver(feed, run)
            await self._drain(feed)
            if feed.known_seq > feed.last_seq:
                if not rows:
                    # The database does not have them (yet): give up on the
                    # claim rather than stall the room; the resync re-checks.
                    feed.known_seq = feed.last_seq
                    return
                await asyncio.sleep(settings.CHOIR_GAP_WAIT)

    async def _on_update(self, feed: Feed, event: events.Event) -> None:
        await self._to_all(feed, event["frame"])

    async def _on_change(self, feed: Feed, event: events.Event) -> None:
        # Like messages by seq: changes go out in rev order, each once; one
        # that arrives ahead of a gap waits for it, and a gap that lasts is
        # filled from the database.
        rev, frame = event["rev"], event["frame"]
        if rev <= feed.last_rev:
            return
        if rev != feed.last_rev + 1:
            feed.pending_changes[rev] = frame
            self.expect_rev(feed, rev)
            return
        run = [(rev, frame)]
        while (early := feed.pending_changes.pop(rev + 1, None)) is not None:
            rev += 1
            run.append((rev, early))
        await self._deliver_changes(feed, run)

    async def _deliver_changes(self, feed: Feed, run: list[tuple[int, str]]) -> None:
        """Write change frames (rev order, all above feed.last_rev) to every socket not yet past them."""
        feed.last_rev = run[-1][0]
        if feed.last_rev > feed.known_rev:
            feed.known_rev = feed.last_rev
        for listener in list(feed.listeners.values()):
            if listener.backlog is not None:
                listener.backlog.extend((-rev, frame) for rev, frame in run)
                continue
            for rev, frame in run:
                if rev > listener.rev:
                    listener.rev = rev
                    await _write(listener, Outgoing(frame))

    def expect_rev(self, feed: Feed, rev: int) -> None:
        """Note that change `rev` exists; if it is not delivered soon, read the changes."""
        if rev > feed.known_rev:
            feed.known_rev = rev
        if feed.known_rev > feed.last_rev and (feed.rev_gap_task is None or feed.rev_gap_task.done()):
            feed.rev_gap_task = _spawn(self._fill_rev_gap(feed))

    async def _fill_rev_gap(self, feed: Feed) -> None:
        await asyncio.sleep(settings.CHOIR_GAP_WAIT)
        while feed.known_rev > feed.last_rev and self.feeds.get(feed.room.pk) is feed:
            first, last = feed.last_rev, feed.known_rev
            try:
                # Every change past `first`, with no upper bound, in one
                # statement: a message changed in the gap and again since
                # shows only its later rev, so a bound would lose it. Revs
                # are taken under the room's lock in commit order, so what
                # one statement sees is every change up to the highest it
                # returns (a rev that is missing was superseded).
                rows = await database_sync_to_async(changes_between)(feed.room.pk, feed.room.slug, first, None)
            except Exception:
                log.warning("change gap fill %s..%s in room %s failed; retrying", first, last, feed.room.pk, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            metrics.GAP_FILLS.inc()
            run = [(row["rev"], protocol.encode(row)) for row in rows if row["rev"] > feed.last_rev]
            if run:
                await self._deliver_changes(feed, run)
            # `last` is committed (broadcast, or read from the room row), so
            # the statement saw it, or the later change that superseded it.
            feed.last_rev = max(feed.last_rev, last)
            feed.pending_changes = {r: f for r, f in feed.pending_changes.items() if r > feed.last_rev}
            drained = []
            while (early := feed.pending_changes.pop(feed.last_rev + len(drained) + 1, None)) is not None:
                drained.append((feed.last_rev + len(drained) + 1, early))
            if drained:
                await self._deliver_changes(feed, drained)

    async def _on_read(self, feed: Feed, event: events.Event) -> None:
        # A read marker moved: only that user's other sockets hear of it.
        outgoing = Outgoing(event["frame"])
        for listener in list(feed.listeners.values()):
            if listener.user_id != event["user_id"] or listener.conn_id == event.get("origin"):
                continue
            if listener.backlog is not None:
                listener.backlog.append((0, event["frame"]))
            else:
                await _write(listener, outgoing)

    async def _on_presence(self, feed: Feed, event: events.Event) -> None:
        # Other processes' arrivals and departures keep this hub's cached
        # online view current between reads of the presence store.
        feed.set_online((feed.online_names | set(event["joined"])) - set(event["left"]))
        await self._to_all(feed, event["frame"])

    async def _on_typing(self, feed: Feed, event: events.Event) -> None:
        await self._to_all(feed, event["frame"], skip=event.get("origin"))

    async def _to_all(self, feed: Feed, frame: str, skip: str | None = None) -> None:
        outgoing = Outgoing(frame)
        for listener in list(feed.listeners.values()):
            if listener.conn_id == skip:
                continue
            if listener.backlog is not None:
                listener.backlog.append((0, frame))
            else:
                await _write(listener, outgoing)

    async def _on_close(self, feed: Feed, event: events.Event) -> None:
        feed.room.status = Room.Status.ARCHIVED  # newcomers are refused until a reopen reloads it
        self._room_loads.pop(feed.room.slug, None)
        for listener in list(feed.listeners.values()):
            await _quietly(listener.shut(event["code"], event["reason"]))

    async def _on_eject(self, feed: Feed, event: events.Event) -> None:
        for listener in list(feed.listeners.values()):
            if listener.user_id == event["user_id"]:
                await _quietly(listener.shut(event["code"], event["reason"]))

    async def _on_room_changed(self, feed: Feed, event: events.Event) -> None:
        room, members = await database_sync_to_async(_room_and_members)(feed.room.pk)
        if room is None:
            return
        if self.by_slug.get(feed.room.slug) is feed:
            del self.by_slug[feed.room.slug]
        self._room_loads.pop(feed.room.slug, None)
        feed.room = room
        self.by_slug[room.slug] = feed
        if not room.is_public:
            # Made private: only members (and staff) may stay.
            for listener in list(feed.listeners.values()):
                if not listener.is_staff and listener.user_id not in members:
                    await _quietly(listener.shut(protocol.Close.FORBIDDEN, "this room is now private"))

    # Presence --------------------------------------------------------------

    def _presence_changed(self, feed: Feed, *, joined: str | None = None, left: str | None = None) -> None:
        # Changes are batched so a crowd arriving at once costs one frame per
        # batch, not one per arrival sent to everyone already there.
        if joined:
            if joined in feed.left:
                feed.left.discard(joined)
            else:
                feed.joined.add(joined)
        if left:
            if left in feed.joined:
                feed.joined.discard(left)
            else:
                feed.left.add(left)
        if feed.flush_task is None:
            feed.flush_task = _spawn(self._flush_presence(feed))

    async def _flush_presence(self, feed: Feed) -> None:
        try:
            await asyncio.sleep(self.PRESENCE_BATCH)
            joined, left = feed.joined, feed.left
            feed.joined, feed.left = set(), set()
            if joined or left:
                # One round trip to the store for the whole batch.
                online = await self.presence.apply(feed.room.pk, added=joined, removed=left) | feed.names.keys()
                feed.set_online(online)
                feed.online_at = time.monotonic()
                # A name still connected through another process has not left.
                left = {name for name in left if name not in online}
                if joined or left:
                    await _quietly(
                        presence.announce(feed.room.pk, joined=sorted(joined), left=sorted(left), online=len(online))
                    )
        finally:
            feed.flush_task = None
            if not feed.listeners:
                await self._drop_feed(feed)

    # Healing ---------------------------------------------------------------

    async def _resync_loop(self) -> None:
        last_rejoin = last_refresh = time.monotonic()
        while True:
            await asyncio.sleep(self.RESYNC_EVERY)
            self.buckets = {key: bucket for key, bucket in self.buckets.items() if not bucket.full()}
            if not self.feeds:
                continue
            try:
                latest = await database_sync_to_async(_current_seqs)(list(self.feeds))
                for room_id, (seq, rev) in latest.items():
                    feed = self.feeds.get(room_id)
                    if feed is not None and seq > feed.last_seq:
                        self.expect(feed, seq)
                    if feed is not None and rev > feed.last_rev:
                        self.expect_rev(feed, rev)
                if time.monotonic() - last_refresh > settings.CHOIR_PRESENCE_TTL / 3:
                    # Keep this process's names from lapsing; a dead process's lapse.
                    last_refresh = time.monotonic()
                    await self.presence.refresh({room_id: set(feed.names) for room_id, feed in self.feeds.items()})
                if time.monotonic() - last_rejoin > self.REJOIN_EVERY:
                    last_rejoin = time.monotonic()
                    for room_id in list(self.feeds):
                        await self.layer.group_add(events.group_name(room_id), self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("hub resync failed; will retry", exc_info=True)


def _room_by_slug(slug: str) -> Room | None:
    return Room.objects.filter(slug=slug).first()


def _room_and_members(room_id: int) -> tuple[Room | None, set[int]]:
    from choir.models import Membership

    room = Room.objects.filter(pk=room_id).first()
    if room is None or room.is_public:
        return room, set()
    return room, set(Membership.objects.filter(room_id=room_id).values_list("user_id", flat=True))


def _current_seq(room_id: int) -> tuple[int, int]:
    return Room.objects.filter(pk=room_id).values_list("last_seq", "last_rev").first() or (0, 0)


def _current_seqs(room_ids: list[int]) -> dict[int, tuple[int, int]]:
    return {pk: (seq, rev) for pk, seq, rev in Room.objects.filter(pk__in=room_ids).values_list("id", "last_seq", "last_rev")}


def _spawn(coroutine: Any) -> asyncio.Task:
    """Start the hub's own background work in a context of its own.

    A gap can be noticed inside a commit hook handed over from a database
    thread (choir/broadcast.py); a task started there would inherit asgiref's
    mark of that thread, and its own database reads would fail with "Single
    thread executor already being used, would deadlock".
    """
    return asyncio.get_running_loop().create_task(coroutine, context=contextvars.Context())


async def _write(listener: Listener, outgoing: Outgoing) -> None:
    if listener.wire is not None:
        outgoing.write(listener.wire)
    else:
        await _quietly(listener.base_send(outgoing.message))


async def _quietly(awaitable: Any) -> None:
    """Await a send or close whose failure must not stop the fan-out."""
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception:
        log.debug("send to a socket failed", exc_info=True)


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def get_hub() -> Hub:
    """The hub of the running event loop (one per process under Daphne)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        for old in [known for known in _hubs if known.is_closed()]:
            del _hubs[old]
        hub = _hubs[loop] = Hub()
    return hub
