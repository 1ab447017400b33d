"""Group commit for sockets: the process's posts stored in batches.

Storing one message costs a transaction: a handful of database round trips
and, in Django and the driver, about a millisecond of CPU. While one batch is
being stored, the posts that arrive meanwhile — in any room — wait here and
go together in the next transaction (services.messages_post_many). A quiet
process still stores each message at once; a busy one pays one transaction
per batch: measured here, a batch of 25 costs a tenth of the CPU per message
of 25 single posts.
"""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async

from choir import services
from choir.models import Room
from choir.protocol import Refusal

MAX_BATCH = 500


class Writer:
    def __init__(self) -> None:
        self.pending: list[tuple[Room, services.Draft, asyncio.Future]] = []
        self.draining = False

    def submit(self, room: Room, draft: services.Draft) -> asyncio.Future:
        """Queue one message now, in call order; the future holds its Posted or Refusal."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending.append((room, draft, future))
        if not self.draining:
            self.draining = True
            asyncio.ensure_future(self._drain())
        return future

    async def _drain(self) -> None:
        # One batch at a time keeps each room's posts in arrival order.
        try:
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                try:
                    outcomes = await database_sync_to_async(services.messages_post_many)(
                        items=[(room, draft) for room, draft, _ in batch]
                    )
                except Exception as exc:
                    # Each socket reports (and logs) the fault as its own.
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), outcome in zip(batch, outcomes):
                    if not future.done():  # its socket may have gone
                        future.set_result(outcome)
        finally:
            self.draining = False


async def settled(future: asyncio.Future) -> services.Posted:
    """What `submit` stored; raises its Refusal."""
    outcome = await future
    if isinstance(outcome, Refusal):
        raise outcome
    return outcome
