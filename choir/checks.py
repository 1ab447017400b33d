"""System checks for a project that installs Choir: what it cannot run without, said at start-up.

Without them a missing channel layer shows up only as a failing socket, and a
missing ASGI_APPLICATION only when `manage.py serve` starts Daphne.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def choir_wiring(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    problems = []
    if "default" not in (getattr(settings, "CHANNEL_LAYERS", None) or {}):
        problems.append(
            Error(
                "Choir needs a default channel layer.",
                hint='Set CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}} '
                "for one process, or a channels_redis layer for several (README, 'Add Choir to your project').",
                id="choir.E001",
            )
        )
    if not getattr(settings, "ASGI_APPLICATION", None):
        problems.append(
            Error(
                "Choir is served over ASGI: ASGI_APPLICATION is not set.",
                hint='Point it at your asgi.py\'s application ("mysite.asgi.application"), built with '
                "choir.asgi.choir_application(get_asgi_application()).",
                id="choir.E002",
            )
        )
    return problems
