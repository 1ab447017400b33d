"""Liveness and readiness probes for load balancers and orchestrators.

Kept rather than django-health-check, after trying it against the contract
(tests/test_ops_health.py, docs/operations.md): it answers a failed check
with 500, not 503, names checks by class (`DatabaseBackend`), not `database`
and `channel_layer`, has no liveness-only probe, and its releases since 4.9
need Python 3.14 (Choir runs on 3.11). Fitting it to the contract would
override its view whole, leaving only its two `SELECT 1`/`PING` checks,
which are the few lines below.
"""

from __future__ import annotations

from choir import redis_clients
from choir.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_channel_layer() -> None:
    if not settings.CHOIR_REDIS_URLS:
        return  # the in-memory layer lives in this process
    for url in settings.CHOIR_REDIS_URLS:
        redis_clients.sync_client(url).ping()


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: the database and the channel layer answer; 503 names what does not."""
    failing: dict[str, str] = {}
    for name, check in (("database", _check_database), ("channel_layer", _check_channel_layer)):
        try:
            check()
        except Exception as exc:
            failing[name] = f"{type(exc).__name__}: {exc}"[:300]
    if failing:
        return JsonResponse({"status": "unavailable", "failing": failing}, status=503)
    return JsonResponse({"status": "ok"})
