"""Security: origins, private rooms and bans on every path, inert XSS, CSP, CSRF, production settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from choir import services
from choir.access import Singer
from choir.models import Message, Membership
from tests.support import ROOT, connect

pytestmark = pytest.mark.django_db(transaction=True)

XSS = ['<script>alert("x")</script>', "<img src=x onerror=alert(1)>", '"><svg onload=alert(1)>', "</textarea><b>bold</b>"]


async def handshake(origin: str | None, slug: str = "lobby") -> tuple[bool, WebsocketCommunicator]:
    from choirsite.asgi import application

    headers = [(b"origin", origin.encode())] if origin is not None else []
    comm = WebsocketCommunicator(application, f"/ws/rooms/{slug}/", headers=headers)
    accepted, _ = await comm.connect(timeout=5)
    return accepted, comm


# Origins -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "https://localhost.evil.example", "http://127.0.0.1.evil.example:8000", "null"],
)
async def test_a_browser_origin_that_is_not_an_allowed_host_is_refused(lobby, origin):
    accepted, comm = await handshake(origin)
    assert not accepted
    await comm.disconnect()


@pytest.mark.parametrize("origin", [None, "http://localhost:8000", "https://127.0.0.1"])
async def test_no_origin_and_same_host_origins_are_accepted(lobby, origin):
    accepted, comm = await handshake(origin)
    assert accepted
    await comm.disconnect()


async def test_a_forged_session_cookie_is_just_a_guest(lobby, make_room):
    await database_sync_to_async(make_room)("secret", is_public=False)
    sock = await connect("secret", headers=[(b"cookie", b"sessionid=forged-not-a-real-session")], hello=False)
    assert (await sock.expect("closing"))["code"] == 4404
    guest = await connect("lobby", headers=[(b"cookie", b"sessionid=forged-not-a-real-session")])
    assert guest.frames[0]["you"]["guest"] is True
    await guest.close()


# Private rooms and bans, on every path ---------------------------------------------------


@pytest.fixture
def secret_room(make_room, make_user):
    room = make_room("secret", is_public=False)
    member = make_user("member")
    Membership.objects.create(room=room, user=member, role=Membership.Role.MEMBER)
    services.message_post(room=room, singer=Singer(user=member, name="member"), body="the secret plan", client_id="s1")
    return room, member


def http_client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def refused_everywhere_over_http(client: Client, slug: str, *, private: bool = True) -> None:
    assert client.get(f"/rooms/{slug}/").status_code == 404
    for query in ("", "?after=0", "?before=100"):
        response = client.get(f"/api/rooms/{slug}/messages{query}")
        assert response.status_code == 404
        assert b"secret plan" not in response.content
    if private:  # a public room's name is no secret, even from someone banned there
        rooms = client.get("/api/rooms/").json()["rooms"]
        assert slug not in [room["slug"] for room in rooms]
        assert slug.encode() not in client.get("/").content


async def refused_on_the_socket(slug: str, user=None, expected: int = 4404) -> None:
    """Socket and replay both: `closing` (4404 as for a missing room; 4403 when banned) and not a single message frame."""
    for query in ("", "after=0"):
        sock = await connect(slug, user=user, query=query, hello=False)
        code = await sock.closed()
        assert code == expected
        kinds = [frame["type"] for frame in sock.frames]
        assert kinds == ["closing", "__closed__"], kinds


async def test_anonymous_visitors_are_refused_a_private_room_on_every_path(secret_room):
    room, _ = secret_room
    await database_sync_to_async(refused_everywhere_over_http)(http_client(), room.slug)
    await refused_on_the_socket(room.slug)


async def test_signed_in_non_members_are_refused_a_private_room_on_every_path(secret_room, make_user):
    room, _ = secret_room
    outsider = await database_sync_to_async(make_user)("outsider")
    await database_sync_to_async(refused_everywhere_over_http)(
        await database_sync_to_async(http_client)(outsider), room.slug
    )
    await refused_on_the_socket(room.slug, user=outsider)


async def test_a_member_gets_every_path_of_a_private_room(secret_room):
    """The control for the two tests above: the same paths work for a member."""
    room, member = secret_room

    def over_http() -> None:
        client = http_client(member)
        assert client.get(f"/rooms/{room.slug}/").status_code == 200
        assert client.get(f"/api/rooms/{room.slug}/messages?after=0").json()["messages"][0]["body"] == "the secret plan"

    await database_sync_to_async(over_http)()
    sock = await connect(room.slug, user=member, query="after=0")
    assert (await sock.expect("message"))["body"] == "the secret plan"
    await sock.expect("synced")
    await sock.close()


async def test_a_banned_user_is_refused_on_every_path_and_dropped_at_once(lobby, make_user):
    staff = await database_sync_to_async(make_user)("boss", is_staff=True, is_superuser=True)
    troll = await database_sync_to_async(make_user)("troll")
    await database_sync_to_async(services.message_post)(
        room=lobby, singer=Singer(user=staff, name="boss"), body="the secret plan", client_id="b1"
    )
    live = await connect("lobby", user=troll)
    await database_sync_to_async(services.user_ban)(room=lobby, actor=Singer(user=staff, name="boss"), user=troll)
    closing = await live.expect("closing")
    assert closing["code"] == 4403
    assert await live.closed() == 4403
    await database_sync_to_async(refused_everywhere_over_http)(
        await database_sync_to_async(http_client)(troll), "lobby", private=False
    )
    await refused_on_the_socket("lobby", user=troll, expected=4403)


# Escaping --------------------------------------------------------------------------


async def test_xss_bodies_are_stored_verbatim_and_sent_back_as_json_text(lobby):
    sock = await connect("lobby")
    for i, body in enumerate(XSS):
        await sock.say(body, client_id=f"x{i}")
        assert (await sock.expect("message"))["body"] == body
    await sock.close()
    stored = await database_sync_to_async(lambda: list(Message.objects.order_by("seq").values_list("body", flat=True)))()
    assert stored == XSS

    def over_http() -> None:
        response = Client().get("/api/rooms/lobby/messages")
        assert response["Content-Type"] == "application/json"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert [m["body"] for m in json.loads(response.content)["messages"]] == XSS

    await database_sync_to_async(over_http)()


class Markup(HTMLParser):
    """Collects what could run: script tags, event-handler and style attributes, and element names."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[tuple[str, str]] = []
        self.styles: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
        for name, _ in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name))
        if "style" in attributes:
            self.styles.append(tag)


def test_the_room_page_escapes_bodies_and_guest_names(lobby):
    guest = Client()
    guest.post("/rooms/lobby/guest-name", {"name": "<img src=x onerror=alert(1)>"})
    for i, body in enumerate(XSS):
        services.message_post(room=lobby, singer=Singer(user=None, name="<b>guest</b>", guest_key="g"), body=body, client_id=f"x{i}")
    html = guest.get("/rooms/lobby/").content.decode()
    markup = Markup()
    markup.feed(html)
    assert "svg" not in markup.tags and "b" not in markup.tags
    assert not markup.handlers
    assert all(script.get("src") for script in markup.scripts)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "<img src=x onerror" not in html


# Site headers and forms ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/rooms/lobby/", "/accounts/login/", "/accounts/signup/"])
def test_site_pages_have_a_strict_csp_and_no_inline_script_or_style(lobby, path):
    response = Client().get(path)
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    markup = Markup()
    markup.feed(response.content.decode())
    assert all(script.get("src") or script.get("type") == "application/json" for script in markup.scripts)
    assert not markup.handlers, markup.handlers
    assert not markup.styles, markup.styles


@pytest.mark.parametrize(
    "path, data",
    [
        ("/rooms/lobby/guest-name", {"name": "mallory"}),
        ("/accounts/login/", {"username": "member", "password": "pw-member"}),
        ("/accounts/signup/", {"username": "new", "password1": "Xy7!long-pass", "password2": "Xy7!long-pass"}),
        ("/accounts/logout/", {}),
        ("/rooms/lobby/moderate", {"action": "slow_mode", "seconds": "5"}),
    ],
)
def test_every_form_refuses_a_post_without_a_csrf_token(lobby, make_user, path, data):
    member = make_user("member", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    if path != "/accounts/login/":
        client.force_login(member)
    assert client.post(path, data).status_code == 403


# Production settings ----------------------------------------------------------------------

SHOW = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, "
    "s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SESSION_COOKIE_HTTPONLY]))"
)


def run_settings(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    base["DJANGO_SETTINGS_MODULE"] = "choirsite.settings"
    return subprocess.run([sys.executable, "-c", SHOW], cwd=ROOT, env={**base, **env}, capture_output=True, text=True)


def test_production_refuses_to_start_without_a_secret_key():
    result = run_settings(DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr
    assert run_settings(DEBUG="0", SECRET_KEY="   ").returncode != 0


def test_production_cookies_are_secure_and_hsts_is_on():
    result = run_settings(DEBUG="0", SECRET_KEY="s" * 50)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [False, True, True, 31_536_000, True, True]


def test_development_keeps_plain_http_cookies_and_no_hsts():
    result = run_settings(DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])[:4] == [True, False, False, 0]
