"""Choir's ASGI wiring: one helper that puts Choir's sockets beside a project's own HTTP app.

A project's asgi.py:

    from django.core.asgi import get_asgi_application

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    django_asgi_app = get_asgi_application()

    from choir.asgi import choir_application

    application = choir_application(django_asgi_app)

Everything is imported when the helper is called, not when this module is,
so importing it never loads Twisted or needs Django set up.
"""

from __future__ import annotations

from typing import Any


def websocket_application() -> Any:
    """Choir's socket routes behind the origin check and the authentication stack."""
    from channels.routing import URLRouter

    from choir.auth import GuestFastPath
    from choir.routing import websocket_urlpatterns
    from choir.security import allowed_hosts_or_no_origin
    from choir.transport import WireMiddleware

    return WireMiddleware(allowed_hosts_or_no_origin(GuestFastPath(URLRouter(websocket_urlpatterns))))


def choir_application(http_app: Any) -> Any:
    """The whole ASGI application: `http_app` for HTTP, Choir for WebSockets.

    `http_app` is the project's own (usually `get_asgi_application()`). With
    CHOIR_SERVE_STATIC on, static files are served in front of it, for a
    server with no proxy in front (the site's `make run`).
    """
    from channels.routing import ProtocolTypeRouter
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    from choir import runtime
    from choir.conf import settings

    application = ProtocolTypeRouter(
        {
            "http": ASGIStaticFilesHandler(http_app) if settings.CHOIR_SERVE_STATIC else http_app,
            "websocket": websocket_application(),
        }
    )
    # Under Daphne only (each is a no-op elsewhere). The transport adapter's
    # checks and patches run earlier, from ChoirConfig.ready().
    runtime.install_shutdown_hook()
    runtime.freeze_startup_heap()  # last: everything above is loaded for good
    return application
