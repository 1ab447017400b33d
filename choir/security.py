"""WebSocket origin checks.

Browsers always send Origin, so a cross-site page trying to open a socket with
the victim's cookies is refused unless its origin is one of ALLOWED_HOSTS.
Non-browser clients (Node, wscat, the benchmark) send no Origin and carry no
victim's cookies, so they are let in; Channels' stock validator refuses them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from channels.security.websocket import OriginValidator, WebsocketDenier
from choir.conf import settings


class OriginOrNoneValidator(OriginValidator):
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        # Like OriginValidator.__call__, but hands back the inner coroutine
        # instead of awaiting it: no frame kept alive per socket.
        parsed_origin = None
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                try:
                    parsed_origin = urlparse(value.decode("latin1"))
                except ValueError:  # `http://[::1`: an origin, but no valid one; refused
                    return WebsocketDenier()(scope, receive, send)
        if self.valid_origin(parsed_origin):
            return self.application(scope, receive, send)
        return WebsocketDenier()(scope, receive, send)

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)


def allowed_hosts_or_no_origin(application: Any) -> OriginOrNoneValidator:
    allowed_hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return OriginOrNoneValidator(application, allowed_hosts)
