"""choir.client's side of the contract, against a scripted server: what it asks for on reconnect, what it ignores."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.server import serve

from choir.client import Backoff, Closed, Refused, RoomClient, socket_url
from choir.client.urls import history_url

QUICK = Backoff(base=0.05, factor=2, cap=0.2)


def message(seq: int, body: str = "", **extra) -> str:
    return json.dumps({"type": "message", "seq": seq, "id": seq, "room": "lobby", "author": "ann",
                       "body": body or f"m{seq}", "sent_at": "2026-01-01T00:00:00Z", "client_id": None, **extra})


class Scripted:
    """A socket server that plays one script per connection and records each handshake."""

    def __init__(self, *scripts) -> None:
        self.scripts = list(scripts)
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def handler(self, ws) -> None:
        self.requests.append((ws.request.path, dict(ws.request.headers)))
        script = self.scripts.pop(0) if self.scripts else None
        if script is None:
            await ws.wait_closed()
            return
        await script(ws)

    async def __aenter__(self) -> str:
        self.server = await serve(self.handler, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws/rooms/lobby/"

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()


async def take(room: RoomClient, count: int) -> list[dict]:
    found = []
    async for item in room:
        found.append(item)
        if len(found) == count:
            break
    return found


async def test_it_resumes_with_after_and_rev_and_hands_out_each_seq_once():
    async def first(ws):
        await ws.send(json.dumps({"type": "hello", "seq": 2, "rev": 7, "you": {"name": "ann"}, "room": {"slug": "lobby"}}))
        await ws.send(json.dumps({"type": "a-frame-from-the-future", "x": 1}))
        await ws.send(message(3))
        await ws.send(json.dumps({"type": "edited", "seq": 1, "rev": 9, "body": "changed"}))
        await ws.close(1001, "restart")

    async def second(ws):
        await ws.send(json.dumps({"type": "hello", "seq": 4, "rev": 9, "you": {"name": "ann"}, "room": {"slug": "lobby"}}))
        await ws.send(message(3))  # overlap: already handed out
        await ws.send(message(4))
        await ws.send(json.dumps({"type": "synced", "seq": 4, "rev": 9}))
        await ws.send("not json at all")
        await ws.send(message(5))
        await ws.wait_closed()

    script = Scripted(first, second)
    async with script as url:
        seen = []
        async with RoomClient(url, backoff=QUICK, on_frame=seen.append) as room:
            messages = await asyncio.wait_for(take(room, 3), 10)
    assert [m["seq"] for m in messages] == [3, 4, 5]
    assert script.requests[0][0] == "/ws/rooms/lobby/"
    assert script.requests[1][0] == "/ws/rooms/lobby/?after=3&rev=9"
    assert "a-frame-from-the-future" in [f["type"] for f in seen]


async def test_a_token_goes_in_the_authorization_header_or_the_query():
    async def hello(ws):
        await ws.send(json.dumps({"type": "hello", "seq": 0, "you": {"name": "bot"}, "room": {"slug": "lobby"}}))
        await ws.wait_closed()

    script = Scripted(hello, hello)
    async with script as url:
        async with RoomClient(url, token="s3cret"):
            pass
        async with RoomClient(url + "?name=x", token="s3cret", token_in_query=True):
            pass
    (path, headers), (query_path, query_headers) = script.requests
    assert headers["authorization"] == "Bearer s3cret" and path == "/ws/rooms/lobby/"
    assert "authorization" not in query_headers and query_path == "/ws/rooms/lobby/?name=x&token=s3cret"


async def test_a_refused_token_ends_the_client_and_fails_its_pending_posts():
    async def refuse(ws):
        await ws.send(json.dumps({"type": "hello", "seq": 0, "you": {"name": "bot"}, "room": {"slug": "lobby"}}))
        await ws.recv()  # the post
        await ws.close(4401, "token revoked")

    async with Scripted(refuse) as url:
        room = RoomClient(url, token="old", backoff=QUICK)
        await room.start()
        with pytest.raises(Closed) as closed:
            await room.say("hello?")
        assert closed.value.code == 4401
        with pytest.raises(Closed):
            await anext(room)
        await room.close()


def test_urls_for_a_room():
    assert socket_url("https://choir.example.com/rooms/ops/") == "wss://choir.example.com/ws/rooms/ops/"
    assert socket_url("ws://127.0.0.1:8000/ws/rooms/lobby") == "ws://127.0.0.1:8000/ws/rooms/lobby/"
    assert history_url("wss://choir.example.com/ws/rooms/ops/") == "https://choir.example.com/api/rooms/ops/messages"


def test_backoff_grows_to_its_cap_with_jitter():
    backoff = Backoff(base=1, factor=2, cap=8)
    for attempt, ceiling in [(0, 1), (1, 2), (2, 4), (3, 8), (10, 8), (500, 8)]:
        delays = {backoff.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1


async def test_a_post_refused_as_unavailable_or_rate_limited_is_sent_again_with_the_same_client_id():
    received = []

    async def flaky(ws):
        await ws.send(json.dumps({"type": "hello", "seq": 0, "you": {"name": "ann"}, "room": {"slug": "lobby"}}))
        answers = [
            {"type": "error", "code": "unavailable", "detail": "storage failed"},
            {"type": "error", "code": "rate_limited", "detail": "slow down", "retry_after": 0.05},
        ]
        async for raw in ws:
            frame = json.loads(raw)
            received.append(frame)
            if answers:
                await ws.send(json.dumps({**answers.pop(0), "ref": frame["client_id"]}))
            else:
                await ws.send(message(1, frame["body"], client_id=frame["client_id"]))

    async def invalid(ws):
        await ws.send(json.dumps({"type": "hello", "seq": 1, "you": {"name": "ann"}, "room": {"slug": "lobby"}}))
        frame = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "error", "code": "invalid", "detail": "too long", "ref": frame["client_id"]}))
        await ws.wait_closed()

    async with Scripted(flaky) as url:
        async with RoomClient(url, backoff=QUICK) as room:
            ack = await asyncio.wait_for(room.say("third time lucky"), 10)
    assert ack["seq"] == 1 and len(received) == 3
    assert len({f["client_id"] for f in received}) == 1

    async with Scripted(invalid) as url:
        async with RoomClient(url, backoff=QUICK) as room:
            with pytest.raises(Refused) as refused:
                await asyncio.wait_for(room.say("x" * 5000), 10)
    assert refused.value.code == "invalid"


def test_the_client_never_imports_django():
    import subprocess
    import sys

    check = "import sys, choir.client; assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django'"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
