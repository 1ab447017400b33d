"""API tokens: stored hashed, shown once, limited to rooms or to reading, revocable everywhere."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from choir import services, tokens
from choir.access import Singer
from choir.models import ApiToken
from tests.support import connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ann(make_user):
    return make_user("ann")


def issue(user, **kwargs):
    kwargs.setdefault("name", "script")
    kwargs.setdefault("actor", services.SYSTEM)
    return services.token_issue(user=user, **kwargs)


def bearer(secret):
    return [(b"authorization", f"Bearer {secret}".encode())]


# The token itself --------------------------------------------------------------


def test_only_a_digest_is_stored_and_the_token_finds_its_user(ann):
    row, secret = issue(ann)
    row.refresh_from_db()
    assert secret.startswith("choir_") and secret not in (row.digest, row.key)
    assert row.key in secret and len(secret) > 40
    assert tokens.authenticate(secret).user == ann


@pytest.mark.parametrize("mangle", [lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"), lambda s: "nope", lambda s: ""])
def test_a_wrong_token_is_refused(ann, mangle):
    _, secret = issue(ann)
    with pytest.raises(tokens.BadToken):
        tokens.authenticate(mangle(secret))


def test_revoked_and_expired_tokens_are_refused(ann):
    row, secret = issue(ann)
    services.token_revoke(token=row, actor=services.SYSTEM)
    with pytest.raises(tokens.BadToken, match="revoked"):
        tokens.authenticate(secret)
    row, secret = issue(ann, name="short")
    ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(tokens.BadToken, match="expired"):
        tokens.authenticate(secret)


def test_last_used_is_written_at_most_once_a_minute(ann, django_assert_num_queries):
    row, secret = issue(ann)
    tokens.authenticate(secret)
    first = ApiToken.objects.get(pk=row.pk).last_used_at
    assert first is not None
    tokens.authenticate(secret)
    assert ApiToken.objects.get(pk=row.pk).last_used_at == first
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=first - timedelta(minutes=2))
    tokens.authenticate(secret)
    assert ApiToken.objects.get(pk=row.pk).last_used_at > first - timedelta(minutes=2)


def test_a_token_needs_a_name(ann):
    from choir.protocol import Refusal

    with pytest.raises(Refusal):
        issue(ann, name="  ")


# The socket ------------------------------------------------------------------


async def test_a_bearer_header_on_the_handshake_signs_the_socket_in(lobby, ann):
    _, secret = await database_sync_to_async(issue)(ann)
    sock = await connect("lobby", headers=bearer(secret), hello=False)
    hello = await sock.expect("hello")
    assert hello["you"]["name"] == "ann" and hello["you"]["guest"] is False
    await sock.say("from a script", client_id="s1")
    message = await sock.expect("message")
    assert message["author"] == "ann"
    await sock.close()


async def test_a_token_on_the_url_signs_the_socket_in(lobby, ann):
    _, secret = await database_sync_to_async(issue)(ann)
    sock = await connect("lobby", query=f"token={secret}", hello=False)
    assert (await sock.expect("hello"))["you"]["name"] == "ann"
    await sock.close()


@pytest.mark.parametrize("how", ["header", "query", "empty"])
async def test_a_bad_token_closes_the_socket_with_4401_after_accept(lobby, ann, how):
    if how == "header":
        sock = await connect("lobby", headers=bearer("choir_abc_def"), hello=False)
    elif how == "query":
        sock = await connect("lobby", query="token=choir_abc_def", hello=False)
    else:
        sock = await connect("lobby", headers=[(b"authorization", b"Bearer ")], hello=False)
    assert (await sock.expect("closing"))["code"] == 4401
    assert await sock.closed() == 4401


async def test_another_authorization_scheme_is_not_a_token(lobby, ann):
    # A site behind a proxy's password protection passes its Basic header on.
    sock = await connect("lobby", headers=[(b"authorization", b"Basic YW5uOnB3")], hello=False)
    assert (await sock.expect("hello"))["you"]["guest"] is True
    await sock.close()


async def test_an_expired_token_closes_with_4401(lobby, ann):
    row, secret = await database_sync_to_async(issue)(ann)
    await database_sync_to_async(ApiToken.objects.filter(pk=row.pk).update)(expires_at=timezone.now())
    sock = await connect("lobby", headers=bearer(secret), hello=False)
    closing = await sock.expect("closing")
    assert closing["code"] == 4401 and "expired" in closing["reason"]


async def test_a_read_only_token_reads_but_every_write_is_forbidden(lobby, ann):
    _, secret = await database_sync_to_async(issue)(ann, read_only=True)
    sock = await connect("lobby", headers=bearer(secret), hello=False)
    hello = await sock.expect("hello")
    assert hello["you"]["can_post"] is False and "read-only" in hello["you"]["why_not"]
    await sock.say("let me in", client_id="r1")
    error = await sock.expect("error")
    assert error["code"] == "forbidden" and error["ref"] == "r1"
    await sock.send({"type": "edit", "seq": 1, "body": "x"})
    assert (await sock.expect("error"))["code"] == "forbidden"
    await sock.send({"type": "delete", "seq": 1})
    assert (await sock.expect("error"))["code"] == "forbidden"
    # It still hears everyone else.
    await database_sync_to_async(services.message_post)(room=lobby, singer=Singer(None, "bob", "b"), body="hi")
    assert (await sock.expect("message"))["body"] == "hi"
    await sock.close()


async def test_a_room_limited_token_sees_only_its_rooms(lobby, make_room, ann):
    hall = await database_sync_to_async(make_room)("hall")
    _, secret = await database_sync_to_async(issue)(ann, rooms=[hall])
    inside = await connect("hall", headers=bearer(secret))
    outside = await connect("lobby", headers=bearer(secret), hello=False)
    assert (await outside.expect("closing"))["code"] == 4404
    await inside.close()


async def test_revoking_closes_that_tokens_sockets_with_4401_and_no_others(lobby, ann):
    row, secret = await database_sync_to_async(issue)(ann)
    _, other = await database_sync_to_async(issue)(ann, name="other")
    doomed = await connect("lobby", headers=bearer(secret))
    spared = await connect("lobby", headers=bearer(other))
    browser = await connect("lobby", user=ann)
    await database_sync_to_async(services.token_revoke)(token=row, actor=services.SYSTEM)
    closing = await doomed.expect("closing")
    assert closing["code"] == 4401 and "revoked" in closing["reason"]
    assert await doomed.closed() == 4401
    await spared.nothing(0.5)
    await browser.nothing(0.1)
    again = await connect("lobby", headers=bearer(secret), hello=False)
    assert (await again.expect("closing"))["code"] == 4401
    await spared.close()
    await browser.close()


# HTTP --------------------------------------------------------------------------


def test_the_history_api_takes_a_bearer_token_and_401s_a_bad_one(lobby, make_room, ann):
    private = make_room("club", is_public=False)
    services.membership_set(room=private, actor=services.SYSTEM, user=ann, role="member")
    _, secret = issue(ann)
    client = Client()
    assert client.get("/api/rooms/club/messages").status_code == 404
    assert client.get("/api/rooms/club/messages", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    listed = client.get("/api/rooms/", HTTP_AUTHORIZATION=f"Bearer {secret}").json()["rooms"]
    assert {r["slug"] for r in listed} == {"club", "lobby"}
    bad = client.get("/api/rooms/lobby/messages", HTTP_AUTHORIZATION="Bearer choir_x_y")
    assert bad.status_code == 401 and bad.json()["code"] == "unauthorized"
    assert "Bearer" in bad["WWW-Authenticate"]
    assert client.get("/api/rooms/", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert client.get("/api/rooms/", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/api/rooms/", HTTP_AUTHORIZATION="Basic YW5uOnB3").status_code == 200


def test_a_room_limited_token_gets_404_elsewhere_over_http(lobby, make_room, ann):
    hall = make_room("hall")
    _, secret = issue(ann, rooms=[hall])
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/rooms/lobby/messages").status_code == 404
    assert client.get("/api/rooms/hall/messages").status_code == 200
    assert [r["slug"] for r in client.get("/api/rooms/").json()["rooms"]] == ["hall"]


# Issuing: the page, admin, the bot command --------------------------------------


def test_a_signed_in_user_creates_a_token_sees_it_once_and_revokes_it(ann, lobby):
    client = Client()
    client.force_login(ann)
    assert client.get("/accounts/tokens/").status_code == 200
    page = client.post("/accounts/tokens/", {"name": "ci job", "read_only": "on", "rooms": [lobby.pk], "expires_in_days": "30"})
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    secret = page.context["issued"]
    assert secret and secret in page.content.decode()
    grant = tokens.authenticate(secret)
    assert grant.read_only and grant.room_ids == {lobby.pk}
    assert secret not in client.get("/accounts/tokens/").content.decode()
    row = ApiToken.objects.get(user=ann)
    assert client.post(f"/accounts/tokens/{row.pk}/revoke").status_code == 302
    with pytest.raises(tokens.BadToken):
        tokens.authenticate(secret)


def test_nobody_revokes_someone_elses_token_and_guests_are_sent_to_log_in(ann, make_user):
    row, secret = issue(ann)
    client = Client()
    assert client.get("/accounts/tokens/").status_code == 302
    client.force_login(make_user("mallory"))
    assert client.post(f"/accounts/tokens/{row.pk}/revoke").status_code == 404
    tokens.authenticate(secret)


def test_staff_issue_a_token_for_a_bot_in_admin_and_revoke_it(make_user, lobby):
    boss = make_user("boss", is_staff=True, is_superuser=True)
    bot = make_user("deploy-bot")
    client = Client()
    client.force_login(boss)
    response = client.post(
        "/admin/choir/apitoken/add/", {"user": bot.pk, "name": "deploys", "rooms": [lobby.pk]}, follow=True
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    secret = next(m.split(": ", 1)[1] for m in shown if "shown only this once" in m)
    assert tokens.authenticate(secret).user == bot
    row = ApiToken.objects.get(user=bot)
    assert row.created_by == boss and list(row.rooms.all()) == [lobby]
    client.post("/admin/choir/apitoken/", {"action": "revoke_tokens", "_selected_action": [row.pk], "post": "yes"})
    with pytest.raises(tokens.BadToken):
        tokens.authenticate(secret)


def test_the_bot_command_makes_an_account_that_cannot_log_in_and_prints_its_token(lobby, capsys):
    call_command("choir_bot", "announcer", "--room", "lobby", "--read-only")
    secret = capsys.readouterr().out.strip()
    grant = tokens.authenticate(secret)
    assert grant.user.username == "announcer" and not grant.user.has_usable_password()
    assert grant.read_only and grant.room_ids == {lobby.pk}


@pytest.mark.parametrize("how", ["revoked", "expired"])
async def test_the_hub_closes_sockets_of_dead_tokens_even_when_the_broadcast_was_lost(lobby, ann, how, monkeypatch):
    from choir.fanout import Hub

    monkeypatch.setattr(Hub, "RESYNC_EVERY", 0.1)
    monkeypatch.setattr(Hub, "TOKEN_CHECK_EVERY", 0.2)
    row, secret = await database_sync_to_async(issue)(ann)
    _, other = await database_sync_to_async(issue)(ann, name="other")
    doomed = await connect("lobby", headers=bearer(secret))
    spared = await connect("lobby", headers=bearer(other))
    # Changed in the database only: no event is sent, as if Redis lost it.
    if how == "revoked":
        change = {"revoked_at": timezone.now()}
    else:
        change = {"expires_at": timezone.now() + timedelta(seconds=0.3)}
    await database_sync_to_async(ApiToken.objects.filter(pk=row.pk).update)(**change)
    closing = await doomed.expect("closing", timeout=10)
    assert closing["code"] == 4401 and how in closing["reason"]
    await spared.nothing(0.5)
    await spared.close()
