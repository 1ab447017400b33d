"""The serving process's runtime: what lives as long as its event loop, and how it ends.

Per event loop (one per process under Daphne; one per test) there is a
group-commit writer for the sockets' posts (choir/writer.py) next to the
fan-out's hub (choir/fanout). Daphne runs on Twisted's asyncio reactor: a
"before shutdown" trigger runs while the reactor still serves, so every
socket gets a `closing` frame and close code 1001 and its client resumes
elsewhere with ?after=.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from choir.conf import settings
from choir.fanout import current_hub, running_hubs
from choir.writer import Writer

log = logging.getLogger("choir.lifecycle")

SHUTDOWN_GRACE = 2.0  # seconds for the goodbyes before the reactor stops anyway

_writers: dict[asyncio.AbstractEventLoop, Writer] = {}


def current_writer() -> Writer:
    """The running event loop's group-commit writer, made on first use."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        for old in [known for known in _writers if known.is_closed()]:
            del _writers[old]
        writer = _writers[loop] = Writer()
    return writer


async def shutdown() -> None:
    """Say goodbye on every socket of every hub, within SHUTDOWN_GRACE."""
    hubs = running_hubs()
    if hubs:
        log.info("shutting down: closing sockets with 1001")
        try:
            await asyncio.wait_for(asyncio.gather(*(hub.shutdown() for hub in hubs), return_exceptions=True), SHUTDOWN_GRACE)
        except TimeoutError:
            log.warning("shutting down: goodbyes took over %ss; stopping anyway", SHUTDOWN_GRACE)


def install_shutdown_hook() -> None:
    if "twisted.internet.reactor" not in sys.modules:
        return  # not under Daphne (tests, management commands)
    from twisted.internet import defer, reactor, tcp

    def before_shutdown():
        # Stop accepting first: a connection accepted now would be dropped
        # unanswered, while a refused one is retried against a live process.
        for reader in reactor.getReaders():
            if isinstance(reader, tcp.Port):
                reader.stopListening()
        if not running_hubs():
            return None
        return defer.Deferred.fromFuture(asyncio.ensure_future(shutdown()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


def freeze_startup_heap() -> None:
    """Keep what the process loaded at startup out of the collector's full passes.

    A full (generation 2) collection stops the event loop for as long as it
    takes to walk every tracked object, and Django, Channels, Twisted and the
    app leave about 100,000 of them that live as long as the process. Measured
    with 1,000 sockets open, full passes took 110-130 ms and each delayed a
    whole room's delivery; frozen, 50-60 ms. Nothing frozen is ever freed,
    which is right for objects that live until exit (the `gc.freeze` recipe).
    """
    if "twisted.internet.reactor" not in sys.modules:
        return
    import gc

    gc.collect()
    gc.freeze()
    log.debug("froze %d startup objects", gc.get_freeze_count())
    # Full passes come only after CHOIR_GC_FULL_EVERY young-generation passes
    # (Python's default is 10) and once the long-lived heap has grown by a
    # quarter. A crowd arriving grows the heap steadily: 10,000 sockets
    # connecting to one worker cost it 14 full passes, 7.5 s in all (stage
    # scenario, 3 workers); at 100 it was 3, and 21% less server CPU for the
    # handshakes, the same memory per socket.
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, settings.CHOIR_GC_FULL_EVERY)


__all__ = ["current_hub", "current_writer", "freeze_startup_heap", "install_shutdown_hook", "running_hubs", "shutdown"]
