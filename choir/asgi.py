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
    from choir.auth import GuestFastPath
    from choir.routing import socket_router
    from choir.security import allowed_hosts_or_no_origin
    from choir.transport import WireMiddleware

    return WireMiddleware(allowed_hosts_or_no_origin(GuestFastPath(socket_router())))


def static_files(http_app: Any) -> Any:
    """Django's static handler in front of `http_app`, answering 404 to paths that leave the static tree.

    Django's handler turns only Http404 into a response: the
    SuspiciousFileOperation that `/static/../choirsite/settings.py` raises
    escapes it as a 500 (and an ERROR line). Such a path names no static
    file, so it gets the same 404 as any other missing one.
    """
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.exceptions import SuspiciousOperation
    from django.http import Http404

    class StaticFiles(ASGIStaticFilesHandler):
        def serve(self, request: Any) -> Any:
            try:
                return super().serve(request)
            except (SuspiciousOperation, ValueError) as exc:  # ValueError: a NUL in the path
                raise Http404("No such static file") from exc

    return StaticFiles(http_app)


def choir_application(http_app: Any) -> Any:
    """The whole ASGI application: `http_app` for HTTP, Choir for WebSockets.

    `http_app` is the project's own (usually `get_asgi_application()`). With
    CHOIR_SERVE_STATIC on, static files are served in front of it, for a
    server with no proxy in front (the site's `make run`).
    """
    from channels.routing import ProtocolTypeRouter

    from choir import runtime
    from choir.conf import settings

    application = ProtocolTypeRouter(
        {
            "http": static_files(http_app) if settings.CHOIR_SERVE_STATIC else http_app,
            "websocket": websocket_application(),
        }
    )
    # Under Daphne only (each is a no-op elsewhere). The transport adapter's
    # checks and patches run earlier, from ChoirConfig.ready().
    runtime.install_shutdown_hook()
    runtime.freeze_startup_heap()  # last: everything above is loaded for good
    return application
