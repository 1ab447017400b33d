"""Group commit for sockets: a room's posts stored in batches.

Every database call of a process runs on one thread (database_sync_to_async),
so a post costs that thread a transaction. While one batch of a room's posts
is being stored, the posts that arrive meanwhile wait here and go together in
the next transaction (services.messages_post): a quiet room still stores each
message at once, and a busy one pays one transaction per batch.
"""

from __future__ import annotations

import asyncio
from channels.db import database_sync_to_async

from choir import services
from choir.models import Room
from choir.protocol import Refusal

MAX_BATCH = 200


class Writer:
    def __init__(self) -> None:
        self.pending: dict[int, list[tuple[Room, services.Draft, asyncio.Future]]] = {}
        self.draining: set[int] = set()

    async def post(self, room: Room, draft: services.Draft) -> services.Posted:
        """Store one message (batched with its room's others); raises Refusal."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending.setdefault(room.pk, []).append((room, draft, future))
        if room.pk not in self.draining:
            self.draining.add(room.pk)
            asyncio.ensure_future(self._drain(room.pk))
        outcome = await future
        if isinstance(outcome, Refusal):
            raise outcome
        return outcome

    async def _drain(self, room_id: int) -> None:
        try:
            while self.pending.get(room_id):
                queue = self.pending[room_id]
                batch, self.pending[room_id] = queue[:MAX_BATCH], queue[MAX_BATCH:]
                room = batch[-1][0]  # the newest copy the hub handed out
                try:
                    # Off the shared database thread: rooms store in parallel on
                    # the thread pool, each room still one batch at a time.
                    outcomes = await database_sync_to_async(services.messages_post, thread_sensitive=False)(
                        room=room, drafts=[draft for _, draft, _ in batch]
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
            self.draining.discard(room_id)
            if not self.pending.get(room_id):
                self.pending.pop(room_id, None)
