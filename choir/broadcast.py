"""The only code that sends to the channel layer.

Services call `on_commit`, so listeners never hear of a row that could still
roll back. A failed send is logged and counted, never raised: the row is
stored, and every hub heals gaps from the database (see choir/hub.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from choir import events, metrics

log = logging.getLogger("choir.broadcast")


def on_commit(room_id: int, event: events.Event) -> None:
    """Broadcast `event` to the room once the current transaction commits."""
    transaction.on_commit(lambda: send(room_id, event))


def send(room_id: int, event: events.Event) -> None:
    """Broadcast now, from synchronous code."""
    loop = serving_loop()
    if loop is not None:
        # Inside a server process the database thread hands the send to the
        # event loop and returns without waiting for Redis. Tasks start in the
        # order they are submitted, so this process's broadcasts keep their
        # order; a lost one is healed by the hubs (choir/hub.py).
        asyncio.run_coroutine_threadsafe(_asend_quietly(room_id, event), loop)
        return
    try:
        async_to_sync(asend)(room_id, event)
    except RuntimeError:
        # Synchronous code running on a thread that also runs an event loop
        # (a notebook, a browser-driving test) cannot use async_to_sync.
        worker = threading.Thread(target=asyncio.run, args=(_asend_quietly(room_id, event),))
        worker.start()
        worker.join()
    except Exception:  # already logged by asend; sync callers must not fail after commit
        pass


def serving_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of this process's hub, when called from another thread."""
    from choir.hub import _hubs

    running = [loop for loop in _hubs if loop.is_running()]
    if len(running) != 1:
        return None
    try:
        if asyncio.get_running_loop() is running[0]:
            return None
    except RuntimeError:
        pass
    return running[0]


async def _asend_quietly(room_id: int, event: events.Event) -> None:
    hub = _this_process_hub()
    if hub is not None and event.get("type") in (events.MESSAGES, events.CHANGE):
        # This process's own sockets hear its messages at once, not by way of
        # Redis: under load the pub/sub round trip and channels-redis' reader
        # added hundreds of milliseconds (issue 5). The hub drops the copy
        # that comes back from Redis by seq (changes: by rev), as it drops
        # any duplicate.
        await hub.hear({**event, "room_id": room_id, "at": time.time()})
    try:
        await asend(room_id, event)
    except Exception:  # logged and counted by asend
        pass


def _this_process_hub() -> Any:
    from choir.hub import _hubs

    return _hubs.get(asyncio.get_running_loop())


async def asend(room_id: int, event: events.Event) -> None:
    """Broadcast now, from the event loop."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(events.group_name(room_id), {**event, "room_id": room_id, "at": time.time()})
    except Exception:
        metrics.BROADCAST_FAILURES.inc()
        log.warning("broadcast failed room=%s type=%s", room_id, event.get("type"), exc_info=True)
        raise
    metrics.BROADCASTS.labels(event["type"]).inc()
