"""Small helpers the fan-out's parts share: background tasks, and sends that must not stop it."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any

from choir.fanout.seat import Seat
from choir.transport import Outgoing

log = logging.getLogger("choir.hub")


def spawn(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task:
    """Start the fan-out's own background work in a context of its own.

    A gap can be noticed inside a commit hook handed over from a database
    thread (choir/broadcast.py); a task started there would inherit asgiref's
    mark of that thread, and its own database reads would fail with "Single
    thread executor already being used, would deadlock".
    """
    return asyncio.get_running_loop().create_task(coroutine, context=contextvars.Context())


async def write(seat: Seat, outgoing: Outgoing) -> None:
    """One frame to one socket: straight onto the wire when there is one."""
    if seat.wire is not None:
        outgoing.write(seat.wire)
    else:
        await quietly(seat.base_send(outgoing.message))


async def quietly(awaitable: Any) -> None:
    """Await a send or close whose failure must not stop the fan-out."""
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception:
        log.debug("send to a socket failed", exc_info=True)
