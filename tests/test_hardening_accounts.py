"""Sign-in lockouts per account and per address (django-axes), sign-ups per address: 429 and a clear page."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db


def sign_in(username: str, password: str, address: str = "10.0.0.1") -> object:
    return Client(REMOTE_ADDR=address).post("/accounts/login/", {"username": username, "password": password})


def sign_up(username: str, address: str = "10.0.0.1") -> object:
    password = "a-long-Passphrase-42"
    return Client(REMOTE_ADDR=address).post("/accounts/signup/", {"username": username, "password1": password, "password2": password})


def test_an_account_is_locked_after_the_failure_limit_from_any_addresses(make_user, settings):
    make_user("alice")
    assert sign_in("alice", "pw-alice").status_code == 302, "the right password works at first"
    for attempt in range(settings.CHOIR_LOGIN_FAILURE_LIMIT - 1):
        assert sign_in("alice", f"guess-{attempt}", address=f"10.1.0.{attempt}").status_code == 200
    last = sign_in("alice", "guess-last", address="10.1.0.99")
    assert last.status_code == 429
    locked = sign_in("alice", "pw-alice", address="10.2.0.1")
    assert locked.status_code == 429, "even the right password, from a fresh address"
    assert "Too many attempts" in locked.content.decode()
    assert "_auth_user_id" not in locked.wsgi_request.session
    # Another account from those addresses is not affected.
    make_user("bob")
    assert sign_in("bob", "pw-bob", address="10.2.0.1").status_code == 302


def test_an_address_is_locked_after_the_failure_limit_over_any_accounts(make_user, settings):
    make_user("carol")
    for attempt in range(settings.CHOIR_LOGIN_FAILURE_LIMIT):
        sign_in(f"nobody-{attempt}", "guess", address="10.3.0.1")
    response = sign_in("carol", "pw-carol", address="10.3.0.1")
    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()
    assert sign_in("carol", "pw-carol", address="10.3.0.2").status_code == 302, "other addresses still sign in"


def test_signing_in_to_ones_own_account_does_not_reset_an_addresss_count(make_user, settings):
    make_user("mallory")
    make_user("victim")
    for attempt in range(settings.CHOIR_LOGIN_FAILURE_LIMIT - 1):
        sign_in("victim", f"guess-{attempt}", address="10.7.0.1")
    assert sign_in("mallory", "pw-mallory", address="10.7.0.1").status_code == 302
    assert sign_in("someone-else", "guess", address="10.7.0.1").status_code == 429


def test_the_admin_sign_in_is_throttled_too(make_user, settings):
    make_user("dora", is_staff=True)
    client = Client(REMOTE_ADDR="10.4.0.1")
    for attempt in range(settings.CHOIR_LOGIN_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "dora", "password": f"guess-{attempt}"})
    assert client.post("/admin/login/", {"username": "dora", "password": "pw-dora"}).status_code == 429


def test_sign_ups_per_address_are_limited(settings):
    settings.CHOIR_SIGNUPS_PER_ADDRESS = 2
    assert sign_up("one").status_code == 302
    assert sign_up("two").status_code == 302
    refused = sign_up("three")
    assert refused.status_code == 429
    assert "Too many accounts were made from this address" in refused.content.decode()
    assert not get_user_model().objects.filter(username="three").exists()
    assert sign_up("three", address="10.9.9.9").status_code == 302, "other addresses may still sign up"


def test_a_sign_up_that_fails_validation_costs_nothing(settings):
    settings.CHOIR_SIGNUPS_PER_ADDRESS = 1
    mismatched = Client(REMOTE_ADDR="10.5.0.1").post("/accounts/signup/", {"username": "x", "password1": "a-long-Passphrase-42", "password2": "other"})
    assert mismatched.status_code == 200
    assert sign_up("x", address="10.5.0.1").status_code == 302


@pytest.mark.e2e
def test_with_redis_failures_counted_in_one_process_lock_out_in_another(uses_redis, daphne, make_user, settings):
    """Failures made through this process's Django land in Redis; a Daphne server sees them."""
    make_user("erin")
    server = daphne()
    for attempt in range(settings.CHOIR_LOGIN_FAILURE_LIMIT):
        sign_in("erin", f"guess-{attempt}", address="10.6.0.1")
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(server.url + "/accounts/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": "erin", "password": "pw-erin", "csrfmiddlewaretoken": token}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(urllib.request.Request(server.url + "/accounts/login/", data=form, headers={"Referer": server.url + "/"}), timeout=10)
    assert refused.value.code == 429
    assert b"Too many attempts" in refused.value.read()
