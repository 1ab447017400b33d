"""ASGI entry point: the site's HTTP app, with Choir's sockets beside it (as any host project does)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "choirsite.settings")
django_http = get_asgi_application()

from choir.asgi import choir_application  # noqa: E402

application = choir_application(django_http)
