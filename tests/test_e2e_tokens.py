"""End to end: tokens on real Daphne processes; a revocation reaches every worker."""

import asyncio
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
import websockets
from channels.db import database_sync_to_async

from choir import services
from choir.models import ApiToken
from tests.support import session_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def frames_until_close(ws, timeout=15.0):
    seen = []
    try:
        while True:
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    except websockets.ConnectionClosed as closed:
        return seen, closed.rcvd.code if closed.rcvd else None


async def hello(ws):
    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert frame["type"] == "hello", frame
    return frame


def revoke_on_the_site(server, user, row) -> None:
    """Revoke through the token page of the server itself, as its owner would."""
    session = session_cookie(user).decode()
    with urllib.request.urlopen(urllib.request.Request(server.url + "/accounts/tokens/", headers={"Cookie": session})) as page:
        csrf_cookie = re.search(r"csrftoken=([^;]+)", page.headers["Set-Cookie"]).group(1)
        form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode()).group(1)
    request = urllib.request.Request(
        f"{server.url}/accounts/tokens/{row.pk}/revoke",
        data=urllib.parse.urlencode({"csrfmiddlewaretoken": form_token}).encode(),
        headers={"Cookie": f"{session}; csrftoken={csrf_cookie}"},
    )
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(request)
    except urllib.error.HTTPError as answer:
        assert answer.code == 302, answer.code


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


async def run_revocation(server, make_user, sockets: int, via_site: bool):
    ann = await database_sync_to_async(make_user)("ann")
    row, secret = await database_sync_to_async(services.token_issue)(actor=services.SYSTEM, user=ann, name="bot")
    header = {"Authorization": f"Bearer {secret}"}
    held = []
    for i in range(sockets):
        # Half by header, half on the URL, as a browser-bound program would.
        if i % 2:
            ws = await websockets.connect(server.ws("lobby", f"token={secret}"))
        else:
            ws = await websockets.connect(server.ws("lobby"), additional_headers=header)
        assert (await hello(ws))["you"]["name"] == "ann"
        held.append(ws)
    await held[0].send(json.dumps({"type": "say", "body": "deploy done", "client_id": "d1"}))
    for ws in held:
        while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "message":
            pass
        assert frame["author"] == "ann"
    bystander = await websockets.connect(server.ws("lobby", "name=guest"))
    await hello(bystander)
    if via_site:
        # One process and no Redis: the revocation must happen in the server's own process.
        await database_sync_to_async(revoke_on_the_site)(server, ann, row)
    else:
        await database_sync_to_async(services.token_revoke)(token=row, actor=services.SYSTEM)
    for ws in held:
        seen, code = await frames_until_close(ws)
        assert code == 4401
        assert seen[-1]["type"] == "closing" and seen[-1]["code"] == 4401
    await bystander.send("still here")
    while (frame := json.loads(await asyncio.wait_for(bystander.recv(), 10)))["type"] != "message":
        pass
    assert frame["body"] == "still here"
    again = await websockets.connect(server.ws("lobby"), additional_headers=header)
    seen, code = await frames_until_close(again)
    assert code == 4401 and seen == [{"type": "closing", "code": 4401, "reason": "this token was revoked"}]
    await bystander.close()
    assert await database_sync_to_async(ApiToken.objects.filter(pk=row.pk, revoked_at__isnull=False).exists)()


async def test_a_token_socket_on_daphne_and_its_revocation_closes_it_with_4401(daphne, lobby, make_user):
    await run_revocation(daphne(), make_user, sockets=2, via_site=True)


async def test_revocation_closes_the_tokens_sockets_on_every_worker(daphne, lobby, make_user, uses_redis):
    # Eight sockets over two workers: the kernel spreads them, so both hold some.
    await run_revocation(daphne(workers=2), make_user, sockets=8, via_site=False)


async def test_a_bad_token_on_daphne_is_accepted_then_closed_with_4401(daphne, lobby):
    server = daphne()
    ws = await websockets.connect(server.ws("lobby", "token=choir_0000_nothing"))
    seen, code = await frames_until_close(ws)
    assert code == 4401 and seen[0]["type"] == "closing"


def http_post(url, token, payload):
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as answer:
        return answer.code, json.loads(answer.read())


async def test_a_script_posts_over_http_to_daphne_retries_safely_and_a_socket_hears_it(daphne, lobby, make_user):
    server = daphne()
    ann = await database_sync_to_async(make_user)("ann")
    _, secret = await database_sync_to_async(services.token_issue)(actor=services.SYSTEM, user=ann, name="ci")
    ws = await websockets.connect(server.ws("lobby"))
    await hello(ws)
    url = server.url + "/api/rooms/lobby/messages"
    status, message = await asyncio.to_thread(http_post, url, secret, {"body": "build green", "client_id": "b-7"})
    assert status == 201 and message["seq"] == 1
    status, again = await asyncio.to_thread(http_post, url, secret, {"body": "build green", "client_id": "b-7"})
    assert status == 200 and again == message
    while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "message":
        pass
    assert frame == message
    status, error = await asyncio.to_thread(http_post, url, "choir_nope_nope", {"body": "x"})
    assert status == 401 and error["code"] == "unauthorized"
    await ws.close()
