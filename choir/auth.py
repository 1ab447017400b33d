"""Socket authentication: Channels' session auth, without needless thread hops."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser


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
