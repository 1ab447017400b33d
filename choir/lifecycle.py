"""Process shutdown under Daphne: say goodbye before the sockets drop.

Daphne runs on Twisted's asyncio reactor. A "before shutdown" trigger runs
while the reactor still serves, so every socket gets a `closing` frame and
close code 1001 and its client resumes elsewhere with ?after=.
"""

from __future__ import annotations

import asyncio
import logging
import sys

log = logging.getLogger("choir.lifecycle")


def install_shutdown_hook() -> None:
    if "twisted.internet.reactor" not in sys.modules:
        return  # not under Daphne (tests, management commands)
    from twisted.internet import defer, reactor

    from choir.hub import _hubs

    def before_shutdown():
        hubs = list(_hubs.values())
        if not hubs:
            return None
        log.info("shutting down: closing sockets with 1001")
        future = asyncio.ensure_future(asyncio.wait_for(asyncio.gather(*(hub.shutdown() for hub in hubs)), 5))
        return defer.Deferred.fromFuture(future)

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
