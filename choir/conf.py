"""Choir's settings and their defaults: the one place both are written.

A project that installs Choir sets any of these in its own settings module
(`CHOIR_MAX_BODY_CHARS = 2000`); whatever it leaves out takes the default
here. Choir's code reads them through `choir.conf.settings`, which falls
through to Django's settings for everything else, and reads on every access
(never copies at import) so `override_settings` and pytest's `settings`
fixture apply at once. The site in this repository fills them from the
environment (choirsite/settings.py), starting from these same defaults.
"""

from __future__ import annotations

from typing import Any, Callable

from django.conf import settings as django_settings


def _follow_debug(current: Any) -> bool:
    return bool(current.DEBUG)


DEFAULTS: dict[str, Any] = {
    # Messages and frames
    "CHOIR_MAX_BODY_CHARS": 4000,
    "CHOIR_MAX_FRAME_BYTES": 16_384,
    "CHOIR_REPLAY_LIMIT": 500,
    "CHOIR_HISTORY_PAGE_MAX": 200,
    "CHOIR_PAGE_MESSAGES": 50,
    "CHOIR_ONLINE_LIST_MAX": 200,
    # Flood control and connection caps
    "CHOIR_RATE_PER_SECOND": 5.0,
    "CHOIR_RATE_BURST": 20,
    "CHOIR_FLOOD_STRIKES": 20,
    "CHOIR_TYPING_INTERVAL": 3.0,
    "CHOIR_MAX_CONNECTIONS_PER_IP": 200,
    "CHOIR_MAX_CONNECTIONS_PER_USER": 20,
    "CHOIR_HANDSHAKE_RATE": 10.0,  # handshakes a second per address, per process, after the burst
    "CHOIR_HANDSHAKE_BURST": 60,
    "CHOIR_ROOM_MISS_SECONDS": 2.0,  # how long an unknown room slug is answered 4404 from memory
    # Fan-out healing and presence
    "CHOIR_GAP_WAIT": 0.25,
    "CHOIR_PRESENCE_TTL": 60,
    # Past this many online, presence is summed up: one frame per socket every
    # CROWD_EVERY seconds, naming at most NAMES_MAX arrivals and departures
    "CHOIR_PRESENCE_CROWD": 500,
    "CHOIR_PRESENCE_CROWD_EVERY": 5.0,
    "CHOIR_PRESENCE_NAMES_MAX": 20,
    # Retention (0 = keep forever); rooms may set their own
    "CHOIR_RETENTION_DAYS": 0,
    # Daphne, as started by `manage.py serve`
    "CHOIR_WS_MAX_MESSAGE_BYTES": 65_536,
    "CHOIR_PING_INTERVAL": 20,
    "CHOIR_PING_TIMEOUT": 30,
    "CHOIR_HANDSHAKE_TIMEOUT": 10,
    # The transport adapter (choir/transport.py): write frames straight to
    # Daphne's sockets; off = plain ASGI sends (slower, relies on nothing private)
    "CHOIR_FAST_PATH": True,
    # Python's garbage collector, under Daphne: full passes after this many
    # middle-generation ones (Python's default: 10; see choir/runtime.py)
    "CHOIR_GC_FULL_EVERY": 100,
    # Bytes queued in the server for one socket before it is closed with 4408
    "CHOIR_MAX_QUEUED_BYTES": 4 * 1024 * 1024,
    "CHOIR_PROXY_HEADERS": False,
    "CHOIR_ACCESS_LOG": _follow_debug,
    "CHOIR_SERVE_STATIC": _follow_debug,
    # Account pages: sign-in lockout (django-axes) and sign-ups per address
    "CHOIR_LOGIN_FAILURE_LIMIT": 5,
    "CHOIR_LOGIN_COOLOFF_MINUTES": 15,
    "CHOIR_SIGNUPS_PER_ADDRESS": 10,
    "CHOIR_SIGNUP_WINDOW_MINUTES": 60,
    # Operations
    "CHOIR_METRICS_TOKEN": "",
    "CHOIR_METRICS_ALLOW": ["127.0.0.1", "::1"],
    "CHOIR_DESK_WINDOW_MINUTES": 5,
    # Webhooks out (choir/webhooks.py)
    "CHOIR_WEBHOOKS_IN_SERVE": True,  # `manage.py serve` runs the delivery worker as a child process
    "CHOIR_WEBHOOK_POLL": 1.0,  # seconds between outbox polls when idle
    "CHOIR_WEBHOOK_TIMEOUT": 10.0,  # seconds a receiver has to answer
    "CHOIR_WEBHOOK_RETRY_BASE": 2.0,  # first retry after this many seconds, then doubling...
    "CHOIR_WEBHOOK_RETRY_MAX": 300.0,  # ...up to this; never given up
    "CHOIR_WEBHOOK_ENDPOINT_CACHE": 2.0,  # seconds a process keeps its list of active endpoints
    # Redis for presence and shared limits: None = the Redis hosts of the
    # default channel layer, if it is a channels-redis layer.
    "CHOIR_REDIS_URLS": None,
    "CHOIR_REDIS_PREFIX": None,
}


def _layer_config() -> dict[str, Any]:
    layer = getattr(django_settings, "CHANNEL_LAYERS", {}).get("default", {})
    if "channels_redis" not in str(layer.get("BACKEND", "")):
        return {}
    return layer.get("CONFIG", {}) or {}


def _host_url(host: Any) -> str:
    if isinstance(host, str):
        return host
    if isinstance(host, dict):
        return str(host["address"])
    return f"redis://{host[0]}:{host[1]}"


def redis_urls() -> list[str]:
    """The Redis servers Choir's own state uses (presence, shared limits); [] without Redis."""
    explicit = getattr(django_settings, "CHOIR_REDIS_URLS", None)
    if explicit is not None:
        return list(explicit)
    return [_host_url(host) for host in _layer_config().get("hosts", [])]


def redis_prefix() -> str:
    explicit = getattr(django_settings, "CHOIR_REDIS_PREFIX", None)
    if explicit:
        return str(explicit)
    return str(_layer_config().get("prefix", "choir"))


_DERIVED: dict[str, Callable[[], Any]] = {"CHOIR_REDIS_URLS": redis_urls, "CHOIR_REDIS_PREFIX": redis_prefix}


class ChoirSettings:
    """Django's settings, with Choir's defaults for the CHOIR_ names a project leaves out."""

    def __getattr__(self, name: str) -> Any:
        if name in _DERIVED:
            return _DERIVED[name]()
        if name in DEFAULTS:
            default = DEFAULTS[name]
            value = getattr(django_settings, name, default)
            return value(django_settings) if callable(value) and value is default else value
        return getattr(django_settings, name)


settings = ChoirSettings()
