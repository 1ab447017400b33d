"""Shared fixtures: rooms and users, socket clients, real Daphne servers."""

from __future__ import annotations

import asyncio
import os

import pytest
from django.conf import settings

from tests import support


@pytest.fixture(autouse=True)
def _fast_limits(settings):
    # Generous rate limits unless a test is about them.
    settings.CHOIR_RATE_PER_SECOND = 1000.0
    settings.CHOIR_RATE_BURST = 1000
    settings.CHOIR_HANDSHAKE_RATE = 1000.0
    settings.CHOIR_HANDSHAKE_BURST = 1000
    settings.CHOIR_GAP_WAIT = 0.05


@pytest.fixture(autouse=True)
def _fresh_shared_buckets():
    """Rate-limit buckets kept in Redis outlive a test: start each test with none."""
    yield
    from choir.conf import settings as choir_settings

    urls = settings.REDIS_URLS  # the suite's Redis, not one a test pointed elsewhere
    if urls:
        from choir import redis_clients

        client = redis_clients.sync_client(urls[0])
        keys = list(client.scan_iter(f"{choir_settings.CHOIR_REDIS_PREFIX}:bucket:*"))
        if keys:
            client.delete(*keys)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Sign-in and sign-up counters start from nothing: every test client is 127.0.0.1."""
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    cache = caches["default"]
    if isinstance(cache, RedisCache):
        # Only this run's keys (its prefix): FLUSHDB would empty others' too.
        client = cache._cache.get_client(write=True)
        for key in client.scan_iter(match=cache.make_key("*")):
            client.delete(key)
    else:
        cache.clear()


@pytest.fixture(autouse=True)
async def _stop_hubs():
    """Each test's event loop gets its own hub; stop it with the test."""
    yield
    from channels.db import database_sync_to_async
    from django.db import connections

    from channels.layers import get_channel_layer

    from choir.fanout import stop_current_hub

    # The thread that ran this test's database calls keeps its connection
    # otherwise, and PostgreSQL will not drop a test database in use.
    await database_sync_to_async(connections.close_all)()
    await stop_current_hub()
    loop = asyncio.get_running_loop()
    layer = get_channel_layer()
    if hasattr(layer, "_layers") and loop in getattr(layer, "_layers", {}):
        inner = layer._layers.pop(loop)
        await inner.flush()


@pytest.fixture
def lobby(db):
    from choir import services

    return services.room_ensure_lobby()


@pytest.fixture
def make_room(db):
    from choir import services

    def make(slug: str = "hall", **fields):
        fields.setdefault("title", slug.title())
        fields.setdefault("actor", services.SYSTEM)
        return services.room_create(slug=slug, **fields)

    return make


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    def make(username: str = "alice", **fields):
        return get_user_model().objects.create_user(username=username, password="pw-" + username, **fields)

    return make


@pytest.fixture
def uses_redis():
    """The test needs the Redis channel layer (pass 2 of `make test`)."""
    support.need_service(bool(settings.REDIS_URLS), "needs REDIS_URL (runs in the PostgreSQL + Redis pass)")


@pytest.fixture
def uses_postgres():
    support.need_service(
        settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql",
        "needs DATABASE_URL for PostgreSQL (runs in the PostgreSQL + Redis pass)",
    )


@pytest.fixture
def server_env(transactional_db):
    """Environment for a Daphne subprocess that shares this test's database."""
    return support.server_env()


@pytest.fixture
def daphne(server_env):
    """Start real Daphne servers: `daphne()` returns a running support.Server."""
    started: list[support.Server] = []

    def start(**kwargs):
        server = support.Server(env=server_env, **kwargs)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def pytest_report_header(config):
    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    return f"choir: database={db} channel layer={layer} strict={support.strict()} pid={os.getpid()}"
