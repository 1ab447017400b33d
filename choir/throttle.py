"""Throttles for the account pages: sign-in lockouts (django-axes) and sign-ups per address.

Password guessing is django-axes' job (settings.AXES_*): it counts failed
sign-ins per account and per address in Django's cache, so with Redis
configured every process sees the same counts, and answers a locked-out
client with registration/locked_out.html and HTTP 429.

Sign-ups per address are counted here, in the same cache. django-ratelimit
would do it, but its system checks refuse the local-memory cache a
one-process site runs on and do not know Django's own Redis cache; a fixed
window on `cache.add` + `cache.incr` (atomic on both) is the whole of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from choir.conf import settings


def client_address(request: HttpRequest) -> str:
    """The address a limit counts against: Daphne's idea of the peer.

    Daphne puts X-Forwarded-For there only when started with
    --proxy-headers (CHOIR_PROXY_HEADERS); nothing here reads the header
    itself, so a client cannot pick the address it is counted as.
    """
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def _signup_key(address: str) -> str:
    return f"choir:signups:{address}"


def signups_limited(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """At most CHOIR_SIGNUPS_PER_ADDRESS accounts per address per CHOIR_SIGNUP_WINDOW_MINUTES.

    Only accounts made count (the view answers a redirect): a mistyped
    password costs nothing. Past the limit every POST is answered 429.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        key = _signup_key(client_address(request))
        window = settings.CHOIR_SIGNUP_WINDOW_MINUTES * 60
        if cache.get(key, 0) >= settings.CHOIR_SIGNUPS_PER_ADDRESS:
            return render(
                request,
                "registration/locked_out.html",
                {
                    "reason": "Too many accounts were made from this address.",
                    "cooloff_minutes": settings.CHOIR_SIGNUP_WINDOW_MINUTES,
                },
                status=429,
            )
        response = view(request, *args, **kwargs)
        made_an_account = 300 <= response.status_code < 400
        if made_an_account and not cache.add(key, 1, timeout=window):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=window)
        return response

    return wrapper
