"""Socket routes, and the answer to every path that is not one."""

from __future__ import annotations

from typing import Any

from channels.routing import URLRouter
from django.urls import path, re_path

from choir.consumers import RoomConsumer

websocket_urlpatterns = [
    path("ws/rooms/<slug:slug>/", RoomConsumer.as_asgi()),
]


async def refuse_handshake(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Refuse a socket handshake at once: the client gets HTTP 403.

    A plain ASGI app, not a consumer, so a refused path costs no channel-layer
    name (a Redis subscription with the pub/sub layer).
    """
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


def socket_router() -> URLRouter:
    """The socket routes, then a catch-all that refuses every other path.

    Channels' URLRouter raises ValueError for a path no route matches, which
    Daphne logs at ERROR and answers with HTTP 500 after its application
    close timeout: `/ws/nothing/`, `/ws/rooms/a b/`, `/ws/rooms/lobby`.
    """
    return URLRouter([*websocket_urlpatterns, re_path(r"", refuse_handshake)])
