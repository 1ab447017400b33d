"""One room as this process sees it: its seats, and its messages in seq order.

Events from several processes can arrive out of order, and a broadcast can be
lost (Redis restarting): a feed that sees a gap waits `CHOIR_GAP_WAIT` seconds
for the missing seqs, then reads them from the database, and the hub compares
its rooms with the database every `Hub.RESYNC_EVERY` seconds (`expect`), so a
message that was stored always reaches every socket, in order, exactly once.
Changes to messages keep their own order, by rev (choir/fanout/changes.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from channels.db import database_sync_to_async

from choir import metrics, protocol
from choir.conf import settings
from choir.fanout.changes import Changes
from choir.fanout.roster import Roster
from choir.fanout.seat import Seat
from choir.fanout.tasks import quietly, spawn, write
from choir.models import Room
from choir.selectors import message_range
from choir.transport import Outgoing

log = logging.getLogger("choir.hub")


class Feed:
    """One room: its local seats, its seq order, its rev order, and its roster."""

    __slots__ = ("room", "seats", "last_seq", "pending", "known_seq", "gap_task", "roster", "served", "changes")

    def __init__(
        self, room: Room, last_seq: int, served: Callable[[Feed], bool] = lambda feed: True, last_rev: int = 0
    ) -> None:
        self.room = room
        self.seats: dict[str, Seat] = {}
        self.last_seq = last_seq  # highest seq delivered here in order
        self.pending: dict[int, str] = {}  # frames that arrived ahead of a gap
        self.known_seq = last_seq  # highest seq known to exist
        self.gap_task: asyncio.Task | None = None
        self.roster = Roster()
        self.served = served  # False once the hub has dropped this feed: its gap fill stops
        self.changes = Changes(self, last_rev)

    # Ordering --------------------------------------------------------------

    async def hear_messages(self, items: list[list[int | str]], at: float | None = None) -> None:
        """Messages from a broadcast: deliver what is next in seq order, hold the rest."""
        # A batch stored in one transaction arrives as one event; what can go
        # out in seq order now is written to each socket in one write.
        run: list[tuple[int, str]] = []
        for seq, frame in items:
            if seq <= self.last_seq + len(run):
                continue
            if seq == self.last_seq + len(run) + 1:
                run.append((seq, frame))
                while (early := self.pending.pop(seq + 1, None)) is not None:
                    seq += 1
                    run.append((seq, early))
            else:
                self.pending[seq] = frame
                self.expect(seq)
        if run:
            await self.deliver(run)
            if at is not None:
                metrics.BROADCAST_LATENCY.observe(max(time.time() - at, 0))

    async def deliver(self, run: list[tuple[int, str]]) -> None:
        """Write consecutive messages (last_seq + 1, …) to every live seat, in order."""
        self.last_seq = run[-1][0]
        if self.last_seq > self.known_seq:
            self.known_seq = self.last_seq
        outgoing = [(seq, Outgoing(frame)) for seq, frame in run]
        whole = None
        delivered = 0
        for seat in list(self.seats.values()):
            if seat.backlog is not None:
                seat.backlog.extend(run)
                continue
            fresh = outgoing if run[0][0] > seat.cursor else [(s, o) for s, o in outgoing if s > seat.cursor]
            if not fresh:
                continue
            seat.cursor = fresh[-1][0]
            delivered += len(fresh)
            if seat.wire is not None:
                # The hot path: no await, frames encoded and framed once.
                if fresh is outgoing:
                    whole = whole if whole is not None else Outgoing.joined([o for _, o in outgoing])
                    Outgoing.write_bytes(seat.wire, whole)
                else:
                    Outgoing.write_bytes(seat.wire, Outgoing.joined([o for _, o in fresh]))
            else:
                for _, out in fresh:
                    await quietly(seat.base_send(out.message))
        metrics.FRAMES_DELIVERED.inc(delivered)

    async def go_live(self, seat: Seat) -> None:
        """Send what arrived while the seat replayed, then deliver to it live."""
        backlog, seat.backlog = seat.backlog or [], None
        for seq, frame in backlog:
            if seq < 0:
                # A change, held as -rev: skip those the replay already gave.
                if -seq > seat.rev:
                    seat.rev = -seq
                    await write(seat, Outgoing(frame))
            elif seq == 0 or seq > seat.cursor:
                seat.cursor = max(seat.cursor, seq)
                await write(seat, Outgoing(frame))

    async def to_all(self, frame: str, skip: str | None = None) -> None:
        """A frame outside the seq and rev orders (presence, typing) to every seat but `skip`."""
        outgoing = Outgoing(frame)
        for seat in list(self.seats.values()):
            if seat.conn_id == skip:
                continue
            if seat.backlog is not None:
                seat.backlog.append((0, frame))
            else:
                await write(seat, outgoing)

    # Healing ---------------------------------------------------------------

    def expect(self, seq: int) -> None:
        """Note that `seq` exists; if it is not delivered soon, fetch it."""
        if seq > self.known_seq:
            self.known_seq = seq
        if self.known_seq > self.last_seq and (self.gap_task is None or self.gap_task.done()):
            self.gap_task = spawn(self._fill_gap())

    async def _drain(self) -> None:
        run = []
        while (frame := self.pending.pop(self.last_seq + len(run) + 1, None)) is not None:
            run.append((self.last_seq + len(run) + 1, frame))
        if run:
            await self.deliver(run)
        self.pending = {s: f for s, f in self.pending.items() if s > self.last_seq}

    async def _fill_gap(self) -> None:
        await asyncio.sleep(settings.CHOIR_GAP_WAIT)
        while self.known_seq > self.last_seq and self.served(self):
            first, last = self.last_seq + 1, self.known_seq
            try:
                rows = await database_sync_to_async(message_range)(self.room.pk, self.room.slug, first, last)
            except Exception:
                log.warning("gap fill %s..%s in room %s failed; retrying", first, last, self.room.pk, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            metrics.GAP_FILLS.inc()
            run = []
            for row in rows:
                if row["seq"] == self.last_seq + len(run) + 1:
                    self.pending.pop(row["seq"], None)
                    run.append((row["seq"], protocol.encode(row)))
            if run:
                await self.deliver(run)
            await self._drain()
            if self.known_seq > self.last_seq:
                if not rows:
                    # The database does not have them (yet): give up on the
                    # claim rather than stall the room; the resync re-checks.
                    self.known_seq = self.last_seq
                    return
                await asyncio.sleep(settings.CHOIR_GAP_WAIT)

    def cancel_tasks(self) -> None:
        for task in (self.gap_task, self.roster.flush_task, self.roster.crowd_task):
            if task is not None:
                task.cancel()
        self.changes.cancel()
