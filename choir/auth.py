"""Socket authentication: Channels' session auth, without needless thread hops, or an API token."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from choir.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.cookie import parse_cookie

from choir import tokens


class SessionAuthMiddleware(AuthMiddleware):
    """Channels' AuthMiddleware; a visitor with no session cookie is anonymous at once.

    The stock one hops to a database thread for every handshake just to learn
    that a cookie-less client (Node, wscat, the benchmark) is nobody.
    """

    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        if settings.SESSION_COOKIE_NAME not in scope.get("cookies", {}):
            scope["user"]._wrapped = AnonymousUser()
            return
        await super().resolve_scope(scope)


def session_auth_stack(inner: Any) -> Any:
    return CookieMiddleware(SessionMiddleware(SessionAuthMiddleware(inner)))


ANONYMOUS = AnonymousUser()  # stateless: one serves every guest socket


class GuestFastPath:
    """Send sockets with no session cookie straight past the session machinery.

    Such a socket can only be an anonymous guest, yet Channels' cookie,
    session and auth middleware would each copy its scope and keep a wrapper
    and a coroutine frame alive for the socket's whole life: several KB per
    idle socket. Sockets that carry a session cookie take the full stack.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.full = session_auth_stack(inner)

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        # Returns the chosen stack's coroutine rather than awaiting it, so
        # this layer keeps no frame alive for the socket's life.
        token = tokens.from_headers(scope.get("headers", ()))
        if token is None and b"token=" in scope.get("query_string", b""):
            token = tokens.from_query(scope["query_string"])
        if token is not None:
            # A program with a token: the consumer checks it once accepted, so
            # a bad one is told with close code 4401 rather than a failed handshake.
            scope.update(cookies={}, session=None, user=ANONYMOUS)
            scope["choir.token"] = token
            return self.inner(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"cookie" and settings.SESSION_COOKIE_NAME in parse_cookie(value.decode("latin-1")):
                return self.full(scope, receive, send)
        # Filled in place: the scope is this connection's alone and no layer
        # above reads it again, and a copy would live as long as the socket.
        scope.update(cookies={}, session=None, user=ANONYMOUS)
        return self.inner(scope, receive, send)
