"""One room's changes (edits, deletes, redactions, reactions) in rev order, and its read-marker echoes.

Changes are ordered by `rev` as messages are by `seq` (choir/fanout/feed.py):
each reaches every socket once, in rev order; one that arrives ahead of a gap
waits `CHOIR_GAP_WAIT` seconds, then the missing ones are read from the
database. A replaying seat's backlog holds changes as (-rev, frame), so
`Feed.go_live` can skip those the replay already gave.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async

from choir import metrics, protocol
from choir.conf import settings
from choir.fanout.tasks import spawn, write
from choir.selectors import changes_between
from choir.transport import Outgoing

if TYPE_CHECKING:
    from choir.fanout.feed import Feed

log = logging.getLogger("choir.hub")


class Changes:
    """A feed's rev order: what was delivered, what waits for a gap, and the gap fill."""

    __slots__ = ("feed", "last_rev", "pending", "known_rev", "gap_task")

    def __init__(self, feed: Feed, last_rev: int) -> None:
        self.feed = feed
        self.last_rev = last_rev  # highest rev delivered here in order
        self.pending: dict[int, str] = {}  # change frames that arrived ahead of a gap
        self.known_rev = last_rev  # highest rev known to exist
        self.gap_task: asyncio.Task | None = None

    async def hear(self, rev: int, frame: str) -> None:
        """A change from a broadcast: deliver it if it is next, else hold it."""
        if rev <= self.last_rev:
            return
        if rev != self.last_rev + 1:
            self.pending[rev] = frame
            self.expect(rev)
            return
        run = [(rev, frame)]
        while (early := self.pending.pop(rev + 1, None)) is not None:
            rev += 1
            run.append((rev, early))
        await self.deliver(run)

    async def deliver(self, run: list[tuple[int, str]]) -> None:
        """Write change frames (rev order, all above last_rev) to every seat not yet past them."""
        self.last_rev = run[-1][0]
        if self.last_rev > self.known_rev:
            self.known_rev = self.last_rev
        for seat in list(self.feed.seats.values()):
            if seat.backlog is not None:
                seat.backlog.extend((-rev, frame) for rev, frame in run)
                continue
            for rev, frame in run:
                if rev > seat.rev:
                    seat.rev = rev
                    await write(seat, Outgoing(frame))

    def expect(self, rev: int) -> None:
        """Note that change `rev` exists; if it is not delivered soon, read the changes."""
        if rev > self.known_rev:
            self.known_rev = rev
        if self.known_rev > self.last_rev and (self.gap_task is None or self.gap_task.done()):
            self.gap_task = spawn(self._fill_gap())

    async def _fill_gap(self) -> None:
        await asyncio.sleep(settings.CHOIR_GAP_WAIT)
        feed = self.feed
        while self.known_rev > self.last_rev and feed.served(feed):
            first, last = self.last_rev, self.known_rev
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
            run = [(row["rev"], protocol.encode(row)) for row in rows if row["rev"] > self.last_rev]
            if run:
                await self.deliver(run)
            # `last` is committed (broadcast, or read from the room row), so
            # the statement saw it, or the later change that superseded it.
            self.last_rev = max(self.last_rev, last)
            self.pending = {r: f for r, f in self.pending.items() if r > self.last_rev}
            drained: list[tuple[int, str]] = []
            while (early := self.pending.pop(self.last_rev + len(drained) + 1, None)) is not None:
                drained.append((self.last_rev + len(drained) + 1, early))
            if drained:
                await self.deliver(drained)

    def cancel(self) -> None:
        if self.gap_task is not None:
            self.gap_task.cancel()


async def echo_read(feed: Feed, user_id: int, origin: str | None, frame: str) -> None:
    """A read marker moved: that user's other sockets in the room hear it, the one that read does not."""
    outgoing = Outgoing(frame)
    for seat in list(feed.seats.values()):
        if seat.user_id != user_id or seat.conn_id == origin:
            continue
        if seat.backlog is not None:
            seat.backlog.append((0, frame))
        else:
            await write(seat, outgoing)
