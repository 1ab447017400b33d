"""ASGI entry point: HTTP to Django, WebSockets to the room consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "choirsite.settings")
django_http = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from choir import runtime  # noqa: E402  (needs Django set up)
from choir.transport import WireMiddleware  # noqa: E402
from choir.auth import GuestFastPath  # noqa: E402
from choir.routing import websocket_urlpatterns  # noqa: E402
from choir.security import allowed_hosts_or_no_origin  # noqa: E402

application = ProtocolTypeRouter(
    {
        # In production nginx serves /static/; `make run` has no nginx.
        "http": ASGIStaticFilesHandler(django_http) if settings.CHOIR_SERVE_STATIC else django_http,
        "websocket": WireMiddleware(
            allowed_hosts_or_no_origin(GuestFastPath(URLRouter(websocket_urlpatterns)))
        ),
    }
)

# The transport adapter's checks and patches run from ChoirConfig.ready().
runtime.install_shutdown_hook()
runtime.freeze_startup_heap()  # last: everything above is loaded for good
