"""/healthz (the process is up) and /readyz (database and channel layer answer, or 503 naming what does not)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.support import free_port


@pytest.mark.django_db
def test_it_says_the_process_is_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_it_is_ready_when_the_database_and_channel_layer_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_it_names_the_channel_layer_when_redis_does_not_answer(client, settings):
    settings.CHOIR_REDIS_URLS = [f"redis://127.0.0.1:{free_port()}/0"]
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert list(body["failing"]) == ["channel_layer"]
    assert "ConnectionError" in body["failing"]["channel_layer"]


@pytest.mark.e2e
def test_it_names_the_database_when_it_does_not_answer(daphne, server_env):
    """A real server whose DATABASE_URL points at a port where nothing listens."""
    server = daphne(extra_env={"DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/choir", "REDIS_URL": ""})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.url + "/readyz", timeout=10)
    assert refused.value.code == 503
    body = json.loads(refused.value.read())
    assert list(body["failing"]) == ["database"]
    assert "OperationalError" in body["failing"]["database"]
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as response:
        assert response.status == 200
