"""One hub per event loop (one per process under Daphne), found through public accessors."""

from __future__ import annotations

import asyncio

from choir.fanout.hub import Hub

_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def current_hub() -> Hub:
    """The hub of the running event loop, made on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        for old in [known for known in _hubs if known.is_closed()]:
            del _hubs[old]
        hub = _hubs[loop] = Hub()
    return hub


def running_hubs() -> list[Hub]:
    """Every hub whose event loop is still open."""
    return [hub for loop, hub in list(_hubs.items()) if not loop.is_closed()]


async def stop_current_hub() -> None:
    """Stop and forget the running loop's hub, if it has one (tests, and the end of a loop)."""
    hub = _hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.stop()
