"""The only code that sends to the channel layer.

Services call `on_commit`, so listeners never hear of a row that could still
roll back. A failed send is logged and counted, never raised: the row is
stored, and every hub heals gaps from the database (choir/fanout/feed.py).

A server process's fan-out registers itself here as a local sink
(`add_local_sink`), so this process's own sockets hear its messages straight
from the commit; this module imports nothing of the fan-out.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from choir import events, metrics

log = logging.getLogger("choir.broadcast")

# How long a commit hook may spend broadcasting once its process's event loop
# has stopped (shutting down): the send is tried on a loop of its own, and
# given up after this; the other processes' hubs heal from the database.
STOPPED_LOOP_SEND_TIMEOUT = 1.0

# Events the local sink hears before the channel layer: those the hub orders
# (by seq, by rev) and so can de-duplicate when Redis brings them back.
LOCAL_FIRST = frozenset({events.MESSAGES, events.CHANGE})

Sink = Callable[[dict[str, Any]], Awaitable[None]]
_sinks: dict[asyncio.AbstractEventLoop, Sink] = {}
# Every loop that has served sockets in this process, sink or no sink: a commit
# hook must know a serving loop that has stopped even after its hub let go.
_serving: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def add_local_sink(loop: asyncio.AbstractEventLoop, sink: Sink) -> None:
    """Hand this process's own messages to `sink` (on `loop`) as they commit.

    The hub of a server process registers here at start; the sink gets each
    `room.messages` and `room.change` event (with `room_id` and `at`) before
    it goes to the channel layer.
    """
    for old in [known for known in _sinks if known.is_closed()]:
        del _sinks[old]
    _sinks[loop] = sink
    _serving.add(loop)


def remove_local_sink(loop: asyncio.AbstractEventLoop) -> None:
    _sinks.pop(loop, None)


def on_commit(room_id: int, event: events.Event) -> None:
    """Broadcast `event` to the room once the current transaction commits."""
    transaction.on_commit(lambda: send(room_id, event))


def on_commit_everywhere(event: events.Event) -> None:
    """Broadcast `event` to every process's hub (not to one room) once the transaction commits."""
    transaction.on_commit(lambda: send_everywhere(event))


def send_everywhere(event: events.Event) -> None:
    """Broadcast to every hub now, from synchronous code: rare events (a token revoked)."""
    loop = serving_loop()
    if loop is not None:
        asyncio.run_coroutine_threadsafe(_asend_everywhere_quietly(event), loop)
        return
    try:
        async_to_sync(_asend_everywhere_quietly)(event)
    except RuntimeError:
        worker = threading.Thread(target=asyncio.run, args=(_asend_everywhere_quietly(event),))
        worker.start()
        worker.join()


async def _asend_everywhere_quietly(event: events.Event) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(events.EVERYWHERE, {**event, "at": time.time()})
    except Exception:
        metrics.BROADCAST_FAILURES.inc()
        log.warning("broadcast failed type=%s", event.get("type"), exc_info=True)
        return
    metrics.BROADCASTS.labels(event["type"]).inc()


def send(room_id: int, event: events.Event) -> None:
    """Broadcast now, from synchronous code. Never waits on a stopped event loop."""
    loop = serving_loop()
    if loop is not None:
        # Inside a server process the database thread hands the send to the
        # event loop and returns without waiting for Redis. Tasks start in the
        # order they are submitted, so this process's broadcasts keep their
        # order; a lost one is healed by the hubs.
        asyncio.run_coroutine_threadsafe(_asend_quietly(room_id, event), loop)
        return
    if _serving_loop_stopped():
        # The process is shutting down: its loop has stopped but is not closed.
        # async_to_sync from a database thread would schedule onto that loop and
        # wait forever (and interpreter exit would join this thread), so the
        # send gets a short-lived loop of its own, and a deadline.
        _send_on_own_loop(room_id, event, timeout=STOPPED_LOOP_SEND_TIMEOUT)
        return
    try:
        async_to_sync(asend)(room_id, event)
    except RuntimeError:
        # Synchronous code running on a thread that also runs an event loop
        # (a notebook, a browser-driving test) cannot use async_to_sync.
        _send_on_own_loop(room_id, event, timeout=None)
    except Exception:  # already logged by asend; sync callers must not fail after commit
        pass


def serving_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop of this process's fan-out, when called from another thread."""
    running = [loop for loop in list(_serving) if loop.is_running()]
    if len(running) != 1:
        return None
    try:
        if asyncio.get_running_loop() is running[0]:
            return None
    except RuntimeError:
        pass
    return running[0]


def _serving_loop_stopped() -> bool:
    """True when a loop that served sockets here has stopped but is not closed (shutting down)."""
    return any(not loop.is_running() and not loop.is_closed() for loop in list(_serving))


def _send_on_own_loop(room_id: int, event: events.Event, timeout: float | None) -> None:
    async def bounded() -> None:
        try:
            await asyncio.wait_for(asend(room_id, event), timeout)
        except Exception:  # logged and counted by asend, or timed out
            pass

    # A daemon thread, so neither this caller nor interpreter exit waits past `timeout`.
    worker = threading.Thread(target=asyncio.run, args=(bounded(),), daemon=timeout is not None)
    worker.start()
    worker.join(timeout)


async def _asend_quietly(room_id: int, event: events.Event) -> None:
    sink = _sinks.get(asyncio.get_running_loop())
    if sink is not None and event["type"] in LOCAL_FIRST:
        # This process's own sockets hear its messages at once, not by way of
        # Redis: under load the pub/sub round trip and channels-redis' reader
        # added hundreds of milliseconds (issue 5). The hub drops the copy
        # that comes back from Redis by seq (changes: by rev), as it drops
        # any duplicate.
        await sink({**event, "room_id": room_id, "at": time.time()})
    try:
        await asend(room_id, event)
    except Exception:  # logged and counted by asend
        pass


async def asend(room_id: int, event: events.Event) -> None:
    """Broadcast now, from the event loop."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(events.group_name(room_id), {**event, "room_id": room_id, "at": time.time()})
    except Exception:
        metrics.BROADCAST_FAILURES.inc()
        log.warning("broadcast failed room=%s type=%s", room_id, event["type"], exc_info=True)
        raise
    metrics.BROADCASTS.labels(event["type"]).inc()
