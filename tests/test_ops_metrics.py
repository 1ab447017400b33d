"""/metrics: Prometheus text from the official client, for allowed addresses or a bearer token."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.test import AsyncClient

from choir.management.commands import serve
from tests.ops_support import scrape, value
from tests.support import connect




@pytest.mark.django_db
def test_it_serves_loopback_in_prometheus_text_format(client):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    names = {name for name, _ in scrape(response.content.decode())}
    for name in (
        "choir_open_sockets",
        "choir_messages_stored_total",
        "choir_frames_delivered_total",
        "choir_replays_total",
        "choir_broadcast_latency_seconds_bucket",
    ):
        assert name in names
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


@pytest.mark.django_db
def test_it_refuses_an_address_not_on_the_allow_list(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 403
    assert b"choir_" not in response.content


@pytest.mark.django_db
def test_it_takes_networks_on_the_allow_list(client, settings):
    settings.CHOIR_METRICS_ALLOW = ["10.0.0.0/8", "not-an-address"]
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


@pytest.mark.django_db
def test_it_lets_a_bearer_token_in_from_anywhere(client, settings):
    settings.CHOIR_METRICS_TOKEN = "s3cret-scraper-token"
    ok = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer s3cret-scraper-token")
    assert ok.status_code == 200
    assert b"choir_messages_stored_total" in ok.content


@pytest.mark.django_db
def test_it_refuses_a_wrong_token_even_from_an_allowed_address(client, settings):
    settings.CHOIR_METRICS_TOKEN = "s3cret-scraper-token"
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer guessed")
    assert response.status_code == 403


@pytest.mark.django_db
def test_it_does_not_take_a_proxys_loopback_address_for_the_callers(client, settings):
    """nginx on loopback relaying a public client: refused unless Daphne trusts the proxy headers."""
    settings.CHOIR_PROXY_HEADERS = False
    relayed = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert relayed.status_code == 403
    # With --proxy-headers, Daphne has already put the forwarded address in REMOTE_ADDR.
    settings.CHOIR_PROXY_HEADERS = True
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403


@pytest.mark.django_db(transaction=True)
async def test_the_counters_move_with_the_traffic(lobby, settings):
    # The latency histogram times broadcasts heard from the channel layer; let
    # Redis deliver rather than a hub's gap fill from the database.
    settings.CHOIR_GAP_WAIT = 5.0
    http = AsyncClient()

    async def now() -> dict:
        response = await http.get("/metrics")
        assert response.status_code == 200
        return scrape(response.content.decode())

    before = await now()
    alto = await connect("lobby", query="after=0")
    await alto.expect("synced")
    bass = await connect("lobby")
    await alto.say("counted, never logged", client_id="m-1")
    await alto.expect("message")
    await bass.expect("message")
    await alto.send({"type": "no-such-type"})
    await alto.expect("error")
    during = await now()
    await alto.close()
    await bass.close()

    assert value(during, "choir_messages_stored_total") == value(before, "choir_messages_stored_total") + 1
    assert value(during, "choir_frames_delivered_total") == value(before, "choir_frames_delivered_total") + 2
    assert value(during, "choir_replays_total") == value(before, "choir_replays_total") + 1
    unknown = value(during, "choir_refusals_total", code="unknown_type")
    assert unknown == value(before, "choir_refusals_total", code="unknown_type") + 1
    assert value(during, "choir_room_online", room="lobby") == value(before, "choir_room_online", room="lobby") + 2
    assert value(during, "choir_open_sockets") == value(before, "choir_open_sockets") + 2
    count = "choir_broadcast_latency_seconds_count"
    assert value(during, count) == value(before, count) + 1


def test_serve_empties_an_operators_metrics_directory(tmp_path: Path, monkeypatch):
    """Files left by the last run would be added to this run's counters."""
    stale = tmp_path / "counter_4242.db"
    stale.write_bytes(b"old")
    keep = tmp_path / "README"
    keep.write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    path, made_here = serve._fresh_metrics_dir()
    assert (path, made_here) == (str(tmp_path), False)
    assert not stale.exists() and keep.exists()


def test_serve_makes_a_fresh_metrics_directory_for_its_workers(monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "placeholder")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    path, made_here = serve._fresh_metrics_dir()
    try:
        assert made_here and os.path.isdir(path) and not os.listdir(path)
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == path  # inherited by the workers
    finally:
        os.rmdir(path)
