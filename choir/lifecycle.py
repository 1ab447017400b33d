"""Daphne adjustments applied at start-up.

The shutdown hook and the startup-heap freeze live in choir/runtime.py; they
are re-exported here for choirsite/asgi.py.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from choir.runtime import freeze_startup_heap, install_shutdown_hook

log = logging.getLogger("choir.lifecycle")


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


__all__ = ["WireMiddleware", "close_oversized_frames_with_1009", "freeze_startup_heap", "install_shutdown_hook", "skip_autobahn_config_dump"]
