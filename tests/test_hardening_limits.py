"""Limits: frame and body size, the token bucket, connection caps, dead peers.

The in-process tests run the real ASGI stack (origin check, auth, routing,
consumer, hub); the ones about Daphne's own limits (1009, pings) run a real
`manage.py serve` and talk to it over TCP.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from typing import Any

import pytest
import websockets
from channels.db import database_sync_to_async

from choir.models import Message
from tests.support import connect, raw_handshake, ws_frames

pytestmark = pytest.mark.django_db(transaction=True)


async def closing_and_code(sock) -> tuple[dict, int]:
    """The `closing` frame, then the close code that follows it."""
    closing = await sock.expect("closing")
    return closing, await sock.closed()


async def answer_to(sock, client_id: str) -> dict:
    """The `message` or `error` that answers this client_id (others' messages skipped)."""
    while True:
        frame = await sock.recv()
        if frame.get("client_id") == client_id and frame["type"] == "message":
            return frame
        if frame["type"] == "error" and frame["ref"] == client_id:
            return frame
        assert frame["type"] in ("message", "presence", "typing"), frame


async def still_open(sock) -> None:
    await sock.send({"type": "ping"})
    await sock.expect("pong")


# Frame and body size --------------------------------------------------------



@pytest.fixture
def three_then_four_strikes(settings):
    """A bucket of three tokens that barely refills; closed at the fourth refusal in a row."""
    settings.CHOIR_RATE_PER_SECOND = 0.01
    settings.CHOIR_RATE_BURST = 3
    settings.CHOIR_FLOOD_STRIKES = 4

async def test_a_frame_over_the_frame_limit_is_invalid_and_the_socket_stays_open(lobby, settings):
    settings.CHOIR_MAX_FRAME_BYTES = 1024
    settings.CHOIR_MAX_BODY_CHARS = 100_000
    sock = await connect("lobby")
    await sock.send({"type": "say", "body": "x" * 2000, "client_id": "big"})
    error = await sock.expect("error")
    assert error["code"] == "invalid"
    assert "1024 bytes" in error["detail"]
    await sock.say("small enough", client_id="small")
    assert (await sock.expect("message"))["body"] == "small enough"
    assert await database_sync_to_async(Message.objects.count)() == 1
    await sock.close()


async def test_the_frame_limit_counts_utf8_bytes_not_characters(lobby, settings):
    settings.CHOIR_MAX_FRAME_BYTES = 1024
    settings.CHOIR_MAX_BODY_CHARS = 100_000
    sock = await connect("lobby")
    # 300 characters, 1,200 bytes: under the limit counted in characters, over it in bytes.
    await sock.send("🎵" * 300)
    assert (await sock.expect("error"))["code"] == "invalid"
    await sock.send("🎵" * 200)
    assert (await sock.expect("message"))["body"] == "🎵" * 200
    await sock.close()


@pytest.mark.parametrize(
    "body, why",
    [
        ("x" * 101, "longer than 100"),
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("before\x00after", "NUL"),
        ("lone \ud800 surrogate", "surrogate"),
        (42, "must be a string"),
        (None, "must be a string"),
    ],
)
async def test_a_bad_body_is_invalid_and_nothing_is_stored(lobby, settings, body, why):
    settings.CHOIR_MAX_BODY_CHARS = 100
    sock = await connect("lobby")
    # json.dumps writes a lone surrogate as the escape \ud800, as a browser's JSON.stringify would.
    await sock.send(json.dumps({"type": "say", "body": body, "client_id": "bad"}))
    error = await sock.expect("error")
    assert (error["code"], error["ref"]) == ("invalid", "bad")
    assert why in error["detail"]
    await still_open(sock)
    assert await database_sync_to_async(Message.objects.count)() == 0
    await sock.close()


async def test_a_body_of_exactly_the_limit_is_accepted(lobby, settings):
    settings.CHOIR_MAX_BODY_CHARS = 100
    sock = await connect("lobby")
    await sock.say("é" * 100, client_id="edge")
    assert (await sock.expect("message"))["body"] == "é" * 100
    await sock.close()


async def test_a_bare_text_frame_with_nul_or_a_lone_surrogate_is_invalid(lobby):
    sock = await connect("lobby")
    for text in ("nul\x00here", "half a pair \udc00"):
        await sock.send(text)
        assert (await sock.expect("error"))["code"] == "invalid"
    await still_open(sock)
    await sock.close()


# Token bucket ------------------------------------------------------------------


async def test_the_bucket_refuses_with_retry_after_and_the_socket_stays_until_the_strikes(lobby, settings):
    settings.CHOIR_RATE_PER_SECOND = 0.01  # one token per 100 s: none comes back during the test
    settings.CHOIR_RATE_BURST = 3
    settings.CHOIR_FLOOD_STRIKES = 4
    sock = await connect("lobby")
    for i in range(3):
        await sock.say(f"burst {i}", client_id=f"b{i}")
        await sock.expect("message")
    for strike in range(3):
        await sock.say("too fast", client_id=f"f{strike}")
        limited = await sock.expect("error")
        assert (limited["code"], limited["ref"]) == ("rate_limited", f"f{strike}")
        assert 0 < limited["retry_after"] <= 100
    await sock.say("the last straw", client_id="f3")
    closing, code = await closing_and_code(sock)
    assert (closing["code"], code) == (4429, 4429)
    assert closing["reason"]
    assert await database_sync_to_async(Message.objects.count)() == 3


async def test_a_flood_of_frames_that_store_nothing_is_closed_too(lobby, three_then_four_strikes):
    sock = await connect("lobby")
    for _ in range(50):
        await sock.send({"type": "nonsense"})
    answers = []
    while True:
        frame = await sock.recv()
        if frame["type"] == "__closed__":
            break
        if frame["type"] == "error":
            answers.append(frame["code"])
    assert answers == ["unknown_type"] * 3 + ["rate_limited"] * 3
    assert frame["code"] == 4429


async def test_pings_alone_cannot_flood_either(lobby, three_then_four_strikes):
    sock = await connect("lobby")
    for _ in range(50):
        await sock.send({"type": "ping"})
    assert await sock.closed() == 4429
    answers = [f["type"] for f in sock.frames if f["type"] not in ("hello", "presence")]
    assert answers == ["pong"] * 3 + ["error"] * 3 + ["closing", "__closed__"]


async def test_a_user_s_sockets_share_one_bucket(lobby, settings, make_user):
    settings.CHOIR_RATE_PER_SECOND = 0.01
    settings.CHOIR_RATE_BURST = 4
    settings.CHOIR_FLOOD_STRIKES = 100
    alice = await database_sync_to_async(make_user)("alice")
    first = await connect("lobby", user=alice)
    second = await connect("lobby", user=alice)
    answers = []
    for i in range(8):
        sock = (first, second)[i % 2]
        await sock.say(f"note {i}", client_id=f"n{i}")
        answers.append((await answer_to(sock, f"n{i}"))["type"])
    assert answers == ["message"] * 4 + ["error"] * 4
    # Someone else has a bucket of their own.
    bob = await database_sync_to_async(make_user)("bob")
    other = await connect("lobby", user=bob)
    await other.say("hello", client_id="bob-1")
    assert (await other.expect("message"))["author"] == "bob"
    for sock in (first, second, other):
        await sock.close()


async def test_a_typing_flood_gets_no_answers_but_costs_tokens_and_is_closed(lobby, three_then_four_strikes):
    # Typing is only a hint: refused ones are never answered, but each takes
    # a token, so a flood of them is closed like any other (issue 12, item 10).
    sock = await connect("lobby")
    for _ in range(50):
        await sock.send({"type": "typing"})
    while True:
        frame = await sock.recv()
        assert frame["type"] in ("presence", "closing", "__closed__"), frame
        if frame["type"] == "__closed__":
            assert frame["code"] == 4429
            break


# Connection caps --------------------------------------------------------------


async def test_connections_over_the_per_address_cap_are_closed_with_4429(lobby, settings):
    settings.CHOIR_MAX_CONNECTIONS_PER_IP = 2
    first = await connect("lobby")
    second = await connect("lobby")
    third = await connect("lobby", hello=False)
    closing, code = await closing_and_code(third)
    assert (closing["code"], code) == (4429, 4429)
    assert "address" in closing["reason"]
    await still_open(first)
    await first.close()
    await asyncio.sleep(0)  # let the hub count the close
    fourth = await connect("lobby")
    await still_open(fourth)
    for sock in (second, fourth):
        await sock.close()


async def test_connections_over_the_per_user_cap_are_closed_with_4429(lobby, settings, make_user):
    settings.CHOIR_MAX_CONNECTIONS_PER_USER = 2
    alice = await database_sync_to_async(make_user)("alice")
    bob = await database_sync_to_async(make_user)("bob")
    mine = [await connect("lobby", user=alice) for _ in range(2)]
    extra = await connect("lobby", user=alice, hello=False)
    closing, code = await closing_and_code(extra)
    assert (closing["code"], code) == (4429, 4429)
    assert "account" in closing["reason"]
    theirs = await connect("lobby", user=bob)
    guest = await connect("lobby")
    for sock in (*mine, theirs, guest):
        await still_open(sock)
        await sock.close()


# Daphne's own limits, on a real server ------------------------------------------


@pytest.mark.e2e
async def test_a_frame_far_over_daphne_s_limit_is_closed_with_1009_before_the_protocol_limit(daphne, lobby):
    server = daphne(extra_env={"CHOIR_WS_MAX_MESSAGE_BYTES": "65536", "CHOIR_MAX_FRAME_BYTES": "16384"})
    async with websockets.connect(server.ws("lobby"), max_size=None) as ws:
        await ws_frames(ws, 1, kind="hello")
        # Over the protocol's limit, under Daphne's: refused, socket open.
        await ws.send(json.dumps({"type": "say", "body": "y" * 30_000}))
        error = (await ws_frames(ws, 1, kind="error"))[0]
        assert error["code"] == "invalid"
        await ws.send("still open")
        assert (await ws_frames(ws, 1))[0]["body"] == "still open"
        # Far over Daphne's limit: closed by the server.
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.send("z" * 300_000)
            await ws_frames(ws, 1, kind="never")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert await database_sync_to_async(Message.objects.count)() == 1


def _read_text_frames(sock: socket.socket, buffered: bytes, until: Any) -> list[dict]:
    """Server frames (unmasked) parsed off a raw socket until `until(frames)` holds."""
    frames: list[dict] = []
    data = buffered
    while True:
        while len(data) >= 2:
            opcode, length, start = data[0] & 0x0F, data[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(data[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(data[2:10], "big"), 10
            if len(data) < start + length:
                break
            payload, data = data[start : start + length], data[start + length :]
            if opcode == 0x1:
                frames.append(json.loads(payload))
        if until(frames):
            return frames
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(frames)} frames"
        data += chunk


@pytest.mark.e2e
@pytest.mark.slow
async def test_a_peer_that_stops_answering_pings_is_dropped_and_leaves_presence(daphne, lobby):
    server = daphne(extra_env={"CHOIR_PING_INTERVAL": "1", "CHOIR_PING_TIMEOUT": "1"})
    async with websockets.connect(server.ws("lobby", "name=watcher")) as watcher:
        await ws_frames(watcher, 1, kind="hello")
        silent, _ = await asyncio.to_thread(raw_handshake, server.port, "/ws/rooms/lobby/?name=deadbeat")
        try:
            joined = await ws_frames(watcher, 1, kind="presence")
            assert "deadbeat (guest)" in joined[0]["joined"]
            # The watcher answers pings (the websockets client does) and stays;
            # the silent peer does not, and Daphne drops it.
            left = await ws_frames(watcher, 1, kind="presence", timeout=20)
            assert left[0]["left"] == ["deadbeat (guest)"]
            assert left[0]["online"] == 1
            await watcher.send(json.dumps({"type": "ping"}))
            await ws_frames(watcher, 1, kind="pong")
        finally:
            silent.close()


@pytest.mark.e2e
async def test_a_reader_that_falls_behind_gets_every_frame_in_order_and_is_counted(daphne, lobby, settings):
    # Frames go straight to the kernel while it takes them (choir/transport.py);
    # once a reader's buffers are full the rest must queue, in order, not vanish.
    # No pings: this reader could not answer them while it is not reading.
    # About 1 MB stays queued in the server, under CHOIR_MAX_QUEUED_BYTES (4 MiB).
    server = daphne(extra_env={"CHOIR_RATE_PER_SECOND": "1000", "CHOIR_RATE_BURST": "1000", "CHOIR_PING_INTERVAL": "600"})
    count, pad = 1300, "x" * 3990  # about 5.2 MB: more than loopback buffers hold here (about 4.3 MB)
    slow, buffered = await asyncio.to_thread(raw_handshake, server.port, "/ws/rooms/lobby/?name=slow", 65536)
    try:
        async with websockets.connect(server.ws("lobby", "name=poster"), max_queue=None) as poster:
            await ws_frames(poster, 1, kind="hello")
            for i in range(count):
                await poster.send(json.dumps({"type": "say", "body": f"{i:04d}{pad}", "client_id": f"c-{i}"}))
            await ws_frames(poster, count, timeout=60)
        if settings.CHOIR_FAST_PATH:  # plain ASGI sends always queue in Twisted: nothing to count
            queued = await asyncio.to_thread(_metric, server.url, "choir_socket_writes_queued_total")
            assert queued >= 1, "the slow reader never filled its buffers; the test proves nothing"
        frames = await asyncio.to_thread(
            _read_text_frames, slow, buffered, lambda got: sum(f["type"] == "message" for f in got) >= count
        )
    finally:
        slow.close()
    messages = [f for f in frames if f["type"] == "message"]
    assert [m["seq"] for m in messages] == list(range(1, count + 1))
    assert [m["body"][:4] for m in messages] == [f"{i:04d}" for i in range(count)]


def _metric(base_url: str, name: str) -> float:
    from tests.ops_support import scrape, value

    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        return value(scrape(response.read().decode()), name)


@pytest.mark.e2e
async def test_an_escaped_lone_surrogate_anywhere_in_a_frame_is_refused_and_the_socket_stays(daphne, lobby):
    server = daphne()
    async with websockets.connect(server.ws("lobby")) as ws:
        await ws_frames(ws, 1, kind="hello")
        # Valid UTF-8 on the wire; json.loads makes each \ud800 a lone surrogate.
        for frame in (
            r'{"type": "nonsense", "client_id": "\ud800"}',
            r'{"type": "say", "body": "hi", "client_id": "\ud800"}',
            r'{"type": "say", "body": "\ud800", "client_id": "ok-1"}',
            r'{"type": "\ud800"}',
        ):
            await ws.send(frame)
            error = (await ws_frames(ws, 1, kind="error"))[0]
            assert error["code"] in ("invalid", "unknown_type")
        await ws.send("still here")
        assert (await ws_frames(ws, 1))[0]["body"] == "still here"
