"""The CSP (django-csp) is the same strict policy as before, with this host's sockets."""

from __future__ import annotations

import pytest
from django.test import Client

EXPECTED = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "connect-src": {"'self'", "ws://chat.example:8443", "wss://chat.example:8443"},
    "object-src": {"'none'"},
    "base-uri": {"'self'"},
    "form-action": {"'self'"},
    "frame-ancestors": {"'none'"},
}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/api/rooms/", "/healthz"])
def test_every_response_carries_the_whole_policy_with_the_requests_host(path, settings):
    settings.ALLOWED_HOSTS = ["chat.example"]
    response = Client(HTTP_HOST="chat.example:8443").get(path)
    policy = response["Content-Security-Policy"]
    directives = {name: set(values) for name, *values in (part.split() for part in policy.split(";") if part.strip())}
    assert directives == EXPECTED


@pytest.mark.django_db
def test_a_page_that_sets_its_own_policy_keeps_it(settings):
    from django.http import HttpResponse

    from choir.middleware import ContentSecurityPolicyMiddleware

    def view(request):
        response = HttpResponse("x")
        response["Content-Security-Policy"] = "default-src 'none'"
        return response

    from django.test import RequestFactory

    response = ContentSecurityPolicyMiddleware(view)(RequestFactory().get("/", HTTP_HOST="localhost"))
    assert response["Content-Security-Policy"] == "default-src 'none'"
