"""HTTP middleware: request ids for log correlation, and the CSP header (django-csp)."""

from __future__ import annotations

import contextvars
import re
import secrets
from typing import Callable

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from choir.conf import settings

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("choir_request_id", default="-")
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def trusted_request_id(incoming: str | None) -> str | None:
    """The proxy's X-Request-ID, if proxy headers are trusted and it is well formed.

    Without a proxy in front (CHOIR_PROXY_HEADERS off) the header comes from
    the client, who could make their lines look like someone else's.
    """
    if not settings.CHOIR_PROXY_HEADERS or not incoming or not VALID_REQUEST_ID.match(incoming):
        return None
    return incoming


class RequestIdMiddleware:
    """Tag each request with an id (the proxy's X-Request-ID, or a new one)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = trusted_request_id(request.headers.get("X-Request-ID")) or secrets.token_hex(8)
        request.request_id = rid  # type: ignore[attr-defined]
        token = request_id.set(rid)
        try:
            response = self.get_response(request)
        finally:
            request_id.reset(token)
        response["X-Request-ID"] = rid
        return response


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware (the policy is settings.CONTENT_SECURITY_POLICY), plus this host's sockets.

    CSP3 lets 'self' cover ws:/wss: to the page's own host, but browsers
    that predate it (older Safari) do not, and the host is only known per
    request: it is added to connect-src here.
    """

    def get_policy_parts(self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only=report_only)
        try:
            host = request.get_host()
        except DisallowedHost:  # answered 400 elsewhere; 'self' still holds
            return parts
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", ()), f"ws://{host}", f"wss://{host}"]
        parts.update = update
        return parts
