"""Choir settings: every value comes from the environment, read here and only here.

Unset, everything has a working local default: SQLite in ./var, the in-memory
channel layer, DEBUG on. Set DATABASE_URL and REDIS_URL for PostgreSQL and Redis.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF

from choir.conf import DEFAULTS
from choirsite.env import ConfigError, env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CHOIR_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", default=True)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ConfigError("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "csp",
    "choir",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "choir.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "choir.middleware.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: turns its lockout into the 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "choirsite.urls"
ASGI_APPLICATION = "choirsite.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: DATABASE_URL, or a SQLite file tuned for several writers (WAL, immediate
# transactions so the seq counter is locked up front, and a busy timeout).
_SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
_database_url = env_str("DATABASE_URL")
if _database_url:
    DATABASES = {
        "default": dj_database_url.parse(
            _database_url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
        )
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["OPTIONS"] = dict(_SQLITE_OPTIONS)
        DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "choir.sqlite3",
            "OPTIONS": dict(_SQLITE_OPTIONS),
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that stops answering (a partition, not a refusal) must not
    # hang the process's database thread, and with it every socket: give up
    # connecting after a few seconds (`say` answers `unavailable`), and let
    # TCP keepalives find connections that died silently. URL options win.
    _pg_options = DATABASES["default"].setdefault("OPTIONS", {})
    _pg_options.setdefault("connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1))
    for _key, _value in (("keepalives", 1), ("keepalives_idle", 30), ("keepalives_interval", 10), ("keepalives_count", 3)):
        _pg_options.setdefault(_key, _value)
DATABASES["default"].setdefault("TEST", {})
SILENCED_SYSTEM_CHECKS: list[str] = []
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The unread-count index carries `author` for index-only scans on
    # PostgreSQL; SQLite ignores the extra column, which is all W040 says.
    SILENCED_SYSTEM_CHECKS.append("models.W040")
# Lets several test runs share a machine without sharing a test database.
_test_suffix = env_str("CHOIR_TEST_DB_SUFFIX")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # On disk, not in memory: tests share it with threads and Daphne processes.
    DATABASES["default"]["TEST"]["NAME"] = str(VAR_DIR / f"test-choir{_test_suffix}.sqlite3")
elif _test_suffix:
    DATABASES["default"]["TEST"]["NAME"] = f"test_{DATABASES['default']['NAME']}{_test_suffix}"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer: in-memory for one process, Redis pub/sub for many. REDIS_URL may
# list several comma-separated URLs: channels-redis shards groups across them.
REDIS_URLS = env_list("REDIS_URL", [])
if REDIS_URLS:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                # redis-py 8 defaults to a 5 s socket timeout, which kills idle
                # pub/sub readers (channels_redis issue 422): wait forever instead.
                "hosts": [{"address": url, "socket_timeout": None} for url in REDIS_URLS],
                "prefix": env_str("CHOIR_REDIS_PREFIX", "choir"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            # One hub channel per process carries every room's traffic: the
            # default capacity of 100 would silently drop under a burst.
            "CONFIG": {"capacity": 100_000, "expiry": 60},
        }
    }

# Django's cache holds the sign-in and sign-up counters (choir/throttle.py):
# in Redis when configured, so every process counts the same failures, else
# in this process. Only the first Redis URL: several are channel-layer
# shards, and Django's RedisCache would take the rest for read replicas.
if REDIS_URLS:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URLS[0],
            "KEY_PREFIX": env_str("CHOIR_REDIS_PREFIX", "choir") + ":cache",
            "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "choir"}}
    # axes warns that a local-memory cache is not shared between processes;
    # without Redis there is one process (`serve` refuses more), so it is.
    SILENCED_SYSTEM_CHECKS.append("axes.W001")

# Password guessing (django-axes): a sign-in is refused with HTTP 429 and
# registration/locked_out.html after CHOIR_LOGIN_FAILURE_LIMIT failures for
# one account, or from one address, until CHOIR_LOGIN_COOLOFF_MINUTES pass.
CHOIR_LOGIN_FAILURE_LIMIT = env_int("CHOIR_LOGIN_FAILURE_LIMIT", DEFAULTS["CHOIR_LOGIN_FAILURE_LIMIT"], minimum=1)
CHOIR_LOGIN_COOLOFF_MINUTES = env_int("CHOIR_LOGIN_COOLOFF_MINUTES", DEFAULTS["CHOIR_LOGIN_COOLOFF_MINUTES"], minimum=1)
CHOIR_SIGNUPS_PER_ADDRESS = env_int("CHOIR_SIGNUPS_PER_ADDRESS", DEFAULTS["CHOIR_SIGNUPS_PER_ADDRESS"], minimum=1)
CHOIR_SIGNUP_WINDOW_MINUTES = env_int("CHOIR_SIGNUP_WINDOW_MINUTES", DEFAULTS["CHOIR_SIGNUP_WINDOW_MINUTES"], minimum=1)
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out sign-in before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"  # counters in CACHES, shared through Redis
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: per account, and per address
AXES_FAILURE_LIMIT = CHOIR_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=CHOIR_LOGIN_COOLOFF_MINUTES)
# A success does not wipe the count: else signing in to one's own account
# between guesses would reset the address's count.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# REMOTE_ADDR only (Daphne's --proxy-headers fills it from nginx): never a
# client's own X-Forwarded-For, even if django-ipware gets installed.
AXES_CLIENT_IP_CALLABLE = "choir.throttle.client_address"
AXES_ENABLE_ADMIN = False  # the counters live in the cache, not in tables to browse
AXES_VERBOSE = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "room-list"
LOGOUT_REDIRECT_URL = "room-list"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Daphne serves /static/ itself unless a front door (nginx) does.
CHOIR_SERVE_STATIC = env_bool("CHOIR_SERVE_STATIC", default=DEBUG)

# Behind a TLS-terminating proxy (nginx) in production.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = 0 if DEBUG else env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes and scrapers talk plain HTTP to Daphne on loopback, not through TLS.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# A strict CSP (django-csp): no inline script or style anywhere; the
# middleware adds ws:// and wss:// of the request's host to connect-src.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Choir's own limits (docs/operations.md explains each one).
CHOIR_MAX_BODY_CHARS = env_int("CHOIR_MAX_BODY_CHARS", DEFAULTS["CHOIR_MAX_BODY_CHARS"], minimum=1)
CHOIR_MAX_FRAME_BYTES = env_int("CHOIR_MAX_FRAME_BYTES", DEFAULTS["CHOIR_MAX_FRAME_BYTES"], minimum=256)
CHOIR_REPLAY_LIMIT = env_int("CHOIR_REPLAY_LIMIT", DEFAULTS["CHOIR_REPLAY_LIMIT"], minimum=1)
CHOIR_HISTORY_PAGE_MAX = env_int("CHOIR_HISTORY_PAGE_MAX", DEFAULTS["CHOIR_HISTORY_PAGE_MAX"], minimum=1)
CHOIR_PAGE_MESSAGES = env_int("CHOIR_PAGE_MESSAGES", DEFAULTS["CHOIR_PAGE_MESSAGES"], minimum=1)
CHOIR_ONLINE_LIST_MAX = env_int("CHOIR_ONLINE_LIST_MAX", DEFAULTS["CHOIR_ONLINE_LIST_MAX"], minimum=1)
CHOIR_RATE_PER_SECOND = env_float("CHOIR_RATE_PER_SECOND", DEFAULTS["CHOIR_RATE_PER_SECOND"], minimum=0.01)
CHOIR_RATE_BURST = env_int("CHOIR_RATE_BURST", DEFAULTS["CHOIR_RATE_BURST"], minimum=1)
CHOIR_FLOOD_STRIKES = env_int("CHOIR_FLOOD_STRIKES", DEFAULTS["CHOIR_FLOOD_STRIKES"], minimum=1)
CHOIR_TYPING_INTERVAL = env_float("CHOIR_TYPING_INTERVAL", DEFAULTS["CHOIR_TYPING_INTERVAL"], minimum=0)
CHOIR_MAX_CONNECTIONS_PER_IP = env_int("CHOIR_MAX_CONNECTIONS_PER_IP", DEFAULTS["CHOIR_MAX_CONNECTIONS_PER_IP"], minimum=1)
CHOIR_MAX_CONNECTIONS_PER_USER = env_int("CHOIR_MAX_CONNECTIONS_PER_USER", DEFAULTS["CHOIR_MAX_CONNECTIONS_PER_USER"], minimum=1)
CHOIR_HANDSHAKE_RATE = env_float("CHOIR_HANDSHAKE_RATE", DEFAULTS["CHOIR_HANDSHAKE_RATE"], minimum=0.01)
CHOIR_HANDSHAKE_BURST = env_int("CHOIR_HANDSHAKE_BURST", DEFAULTS["CHOIR_HANDSHAKE_BURST"], minimum=1)
CHOIR_ROOM_MISS_SECONDS = env_float("CHOIR_ROOM_MISS_SECONDS", DEFAULTS["CHOIR_ROOM_MISS_SECONDS"], minimum=0)
CHOIR_GAP_WAIT = env_float("CHOIR_GAP_WAIT", DEFAULTS["CHOIR_GAP_WAIT"], minimum=0)
# Global history retention for `manage.py choir_prune` (0 = keep forever); rooms may set their own.
CHOIR_RETENTION_DAYS = env_int("CHOIR_RETENTION_DAYS", DEFAULTS["CHOIR_RETENTION_DAYS"], minimum=0)
CHOIR_PRESENCE_TTL = env_int("CHOIR_PRESENCE_TTL", DEFAULTS["CHOIR_PRESENCE_TTL"], minimum=5)
# Daphne, as started by `manage.py serve`.
CHOIR_WS_MAX_MESSAGE_BYTES = env_int("CHOIR_WS_MAX_MESSAGE_BYTES", DEFAULTS["CHOIR_WS_MAX_MESSAGE_BYTES"], minimum=1024)
CHOIR_PING_INTERVAL = env_int("CHOIR_PING_INTERVAL", DEFAULTS["CHOIR_PING_INTERVAL"], minimum=1)
CHOIR_PING_TIMEOUT = env_int("CHOIR_PING_TIMEOUT", DEFAULTS["CHOIR_PING_TIMEOUT"], minimum=1)
CHOIR_HANDSHAKE_TIMEOUT = env_int("CHOIR_HANDSHAKE_TIMEOUT", DEFAULTS["CHOIR_HANDSHAKE_TIMEOUT"], minimum=1)
# The transport adapter (choir/transport.py): CHOIR_FAST_PATH=0 sends through plain ASGI.
CHOIR_FAST_PATH = env_bool("CHOIR_FAST_PATH", DEFAULTS["CHOIR_FAST_PATH"])
CHOIR_MAX_QUEUED_BYTES = env_int("CHOIR_MAX_QUEUED_BYTES", DEFAULTS["CHOIR_MAX_QUEUED_BYTES"], minimum=65_536)
CHOIR_PROXY_HEADERS = env_bool("CHOIR_PROXY_HEADERS", DEFAULTS["CHOIR_PROXY_HEADERS"])
CHOIR_ACCESS_LOG = env_bool("CHOIR_ACCESS_LOG", DEBUG)
CHOIR_METRICS_TOKEN = env_str("CHOIR_METRICS_TOKEN")
CHOIR_METRICS_ALLOW = env_list("CHOIR_METRICS_ALLOW", DEFAULTS["CHOIR_METRICS_ALLOW"])

# The conductor's desk (admin): the window for "messages per minute".
CHOIR_WEBHOOKS_IN_SERVE = env_bool("CHOIR_WEBHOOKS_IN_SERVE", DEFAULTS["CHOIR_WEBHOOKS_IN_SERVE"])
CHOIR_WEBHOOK_POLL = env_float("CHOIR_WEBHOOK_POLL", DEFAULTS["CHOIR_WEBHOOK_POLL"], minimum=0.05)
CHOIR_WEBHOOK_TIMEOUT = env_float("CHOIR_WEBHOOK_TIMEOUT", DEFAULTS["CHOIR_WEBHOOK_TIMEOUT"], minimum=0.1)
CHOIR_WEBHOOK_RETRY_BASE = env_float("CHOIR_WEBHOOK_RETRY_BASE", DEFAULTS["CHOIR_WEBHOOK_RETRY_BASE"], minimum=0.01)
CHOIR_WEBHOOK_RETRY_MAX = env_float("CHOIR_WEBHOOK_RETRY_MAX", DEFAULTS["CHOIR_WEBHOOK_RETRY_MAX"], minimum=0.01)
CHOIR_WEBHOOK_ENDPOINT_CACHE = env_float("CHOIR_WEBHOOK_ENDPOINT_CACHE", DEFAULTS["CHOIR_WEBHOOK_ENDPOINT_CACHE"], minimum=0)
CHOIR_DESK_WINDOW_MINUTES = env_int("CHOIR_DESK_WINDOW_MINUTES", DEFAULTS["CHOIR_DESK_WINDOW_MINUTES"], minimum=1)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
# One JSON object per line (docs/operations.md); `logfmt` reads better in a terminal.
CHOIR_LOG_FORMAT = env_str("CHOIR_LOG_FORMAT", "json").lower()
if CHOIR_LOG_FORMAT not in {"json", "logfmt"}:
    raise ConfigError(f"CHOIR_LOG_FORMAT must be json or logfmt, got {CHOIR_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {"()": "choir.logs.JsonFormatter" if CHOIR_LOG_FORMAT == "json" else "choir.logs.LogfmtFormatter"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "choir": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
