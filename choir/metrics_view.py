"""/metrics: Prometheus text format, for allowed addresses or a bearer token.

Under `manage.py serve` the values come from every worker (multiprocess mode,
see choir/metrics.py); under a lone Daphne or in tests, from this process.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from choir.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess


def _address_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in settings.CHOIR_METRICS_ALLOW:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def allowed(request: HttpRequest) -> bool:
    """A valid bearer token, or a caller address on CHOIR_METRICS_ALLOW."""
    token = settings.CHOIR_METRICS_TOKEN
    offered = request.headers.get("Authorization", "")
    if token and offered:
        return hmac.compare_digest(offered.encode(), f"Bearer {token}".encode())
    if "X-Forwarded-For" in request.headers and not settings.CHOIR_PROXY_HEADERS:
        # The peer is a proxy speaking for someone else (nginx on loopback for
        # a public client): its own address says nothing about the caller.
        return False
    # With CHOIR_PROXY_HEADERS, Daphne has already put the forwarded address here.
    return _address_allowed(request.META.get("REMOTE_ADDR", ""))


def collect() -> bytes:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        return HttpResponseForbidden("metrics are for allowed addresses or a bearer token\n", content_type="text/plain")
    return HttpResponse(collect(), content_type=CONTENT_TYPE_LATEST)
