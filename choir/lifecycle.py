"""Process shutdown under Daphne: say goodbye before the sockets drop.

Daphne runs on Twisted's asyncio reactor. A "before shutdown" trigger runs
while the reactor still serves, so every socket gets a `closing` frame and
close code 1001 and its client resumes elsewhere with ?after=.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

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


def close_oversized_frames_with_1009() -> None:
    """Under Daphne, answer a frame over the size limit with close code 1009.

    Autobahn fails such a connection by cutting TCP ("failByDrop"), so the
    client sees 1006 and cannot tell why. With failByDrop off it sends close
    1009 at the frame's header; the rest of the frame is read and discarded,
    never buffered, and the connection is dropped after the closing handshake
    (about a second at most).
    """
    if "twisted.internet.reactor" not in sys.modules:
        return
    from daphne.ws_protocol import WebSocketFactory

    original = WebSocketFactory.__init__
    if getattr(original, "choir_polite", False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.setProtocolOptions(failByDrop=False)

    __init__.choir_polite = True  # type: ignore[attr-defined]
    WebSocketFactory.__init__ = __init__  # type: ignore[method-assign]


class WireMiddleware:
    """Put Daphne's WebSocket protocol object in the scope as "choir.wire".

    The hub writes one prepared frame to many sockets through it
    (choir/wire.py), and the consumer closes with protocol codes such as 1001
    that autobahn refuses from an application. A plain function returning the
    inner coroutine, so no middleware frame stays alive per socket.
    """

    def __init__(self, application: Any) -> None:
        self.application = application

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        ws_protocol = getattr(send, "args", (None,))[0]
        if scope["type"] == "websocket" and hasattr(ws_protocol, "sendCloseFrame"):
            scope["choir.wire"] = ws_protocol
        return self.application(scope, receive, send)


def skip_autobahn_config_dump() -> None:
    """Stop autobahn pretty-printing its whole configuration on every connection.

    It formats the dump for a debug log line even when debug logging is off:
    about 5% of a handshake's CPU under Daphne.
    """
    if "twisted.internet.reactor" not in sys.modules:
        return
    from autobahn.websocket import protocol as autobahn_protocol

    autobahn_protocol.pformat = lambda obj, *args, **kwargs: "(configuration not formatted)"


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
