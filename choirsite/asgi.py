"""ASGI entry point: HTTP to Django, WebSockets to the room consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "choirsite.settings")
django_http = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.exceptions import SuspiciousOperation  # noqa: E402
from django.http import Http404  # noqa: E402

from choir import lifecycle  # noqa: E402  (needs Django set up)
from choir.auth import GuestFastPath  # noqa: E402
from choir.routing import socket_router  # noqa: E402
from choir.security import allowed_hosts_or_no_origin  # noqa: E402


class StaticFiles(ASGIStaticFilesHandler):
    """Django's static handler, answering 404 to paths that leave the static tree.

    Django's handler turns only Http404 into a response: the
    SuspiciousFileOperation that `/static/../choirsite/settings.py` raises
    escapes it as a 500 (and an ERROR line). Such a path names no static
    file, so it gets the same 404 as any other missing one.
    """

    def serve(self, request):  # type: ignore[no-untyped-def]
        try:
            return super().serve(request)
        except (SuspiciousOperation, ValueError) as exc:  # ValueError: a NUL in the path
            raise Http404("No such static file") from exc


application = ProtocolTypeRouter(
    {
        # In production nginx serves /static/; `make run` has no nginx.
        "http": StaticFiles(django_http) if settings.CHOIR_SERVE_STATIC else django_http,
        "websocket": lifecycle.WireMiddleware(
            allowed_hosts_or_no_origin(GuestFastPath(socket_router()))
        ),
    }
)

lifecycle.install_shutdown_hook()
lifecycle.close_oversized_frames_with_1009()
lifecycle.skip_autobahn_config_dump()
lifecycle.freeze_startup_heap()  # last: everything above is loaded for good
