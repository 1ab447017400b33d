"""HTTP middleware: request ids for log correlation, and the CSP header."""

from __future__ import annotations

import contextvars
import re
import secrets
from typing import Callable

from django.http import HttpRequest, HttpResponse

from choir.conf import settings

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("choir_request_id", default="-")
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def trusted_request_id(incoming: str | None) -> str | None:
    """The proxy's X-Request-ID, if proxy headers are trusted and it is well formed.

    Without a proxy in front (CHOIR_PROXY_HEADERS off) the header comes from
    the client, who could make their lines look like someone else's.
    """
    if not settings.CHOIR_PROXY_HEADERS or not incoming or not _VALID_ID.match(incoming):
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


class ContentSecurityPolicyMiddleware:
    """A strict CSP: no inline script or style, sockets only to this host."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            host = request.get_host()
            response["Content-Security-Policy"] = (
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                f"connect-src 'self' ws://{host} wss://{host}; object-src 'none'; "
                "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
            )
        return response
