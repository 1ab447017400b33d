"""Fuzzed frames: whatever a client sends, it gets one answer, and nobody else is disturbed.

`protocol.parse_frame` is fuzzed directly (fast, many examples). Then the same
frames go through the real ASGI stack to a consumer: a fuzzing client gets
exactly the answer the protocol promises (`message`, `error`, `pong`, or
nothing for `typing`) and is never closed, while an observer in the room
receives exactly the messages that were stored, in seq order, and nothing else.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from choir import protocol
from choir.protocol import Delete, Edit, Ping, Refusal, Say, Typing
from tests.support import connect

MAX_BODY = 200
MAX_FRAME = 1024
CODES = {"invalid", "unknown_type", "forbidden", "rate_limited", "not_found", "unavailable"}

# Strategies ---------------------------------------------------------------------

any_char = st.characters(codec=None)  # every code point, lone surrogates and NUL included
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(any_char, max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
frame_objects = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["say", "typing", "ping", "edit", "delete", "bogus", "", "SAY"]) | json_values,
        "body": st.text(any_char, max_size=260) | json_values,
        "client_id": st.text(any_char, max_size=70) | st.sampled_from(["a", "b", "c"]) | json_values,
        "seq": st.integers(min_value=-3, max_value=40) | st.integers(min_value=-(2**70), max_value=2**70) | json_values,
    },
).flatmap(lambda known: st.dictionaries(st.text(max_size=6), json_values, max_size=3).map(lambda extra: {**extra, **known}))


def sized(n: int, char: str) -> str:
    return char * n


text_frames = st.one_of(
    st.text(any_char, max_size=300),
    frame_objects.map(json.dumps),
    frame_objects.map(lambda o: json.dumps(o, ensure_ascii=False)),
    st.sampled_from(["{", "{}", "[]", "null", "42", '"say"', " {", "\ufeff{}", "{'type': 'say'}"]),
    st.builds(sized, st.sampled_from([MAX_BODY - 1, MAX_BODY, MAX_BODY + 1, MAX_FRAME // 4 + 1, MAX_FRAME + 1]), st.sampled_from(["x", "é", "🎵", " "])),
)
frames = st.one_of(text_frames, st.binary(max_size=200))


@pytest.fixture
def limits(settings):
    settings.CHOIR_MAX_BODY_CHARS = MAX_BODY
    settings.CHOIR_MAX_FRAME_BYTES = MAX_FRAME
    settings.CHOIR_RATE_BURST = 1_000_000
    settings.CHOIR_RATE_PER_SECOND = 1_000_000.0
    settings.CHOIR_TYPING_INTERVAL = 0


def parse(frame: str | bytes) -> Any:
    """parse_frame's verdict on a frame: a command, or the Refusal."""
    try:
        if isinstance(frame, bytes):
            return protocol.parse_frame(None, frame)
        return protocol.parse_frame(frame)
    except Refusal as refusal:
        return refusal


# The parser alone -----------------------------------------------------------------------


@hsettings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=frames)
@example(frame=json.dumps({"type": "nope", "client_id": "\ud800"}))
@example(frame=json.dumps({"type": "delete", "seq": 2**64}))
def test_the_parser_turns_any_frame_into_a_command_or_an_answerable_refusal(limits, frame):
    verdict = parse(frame)
    if isinstance(verdict, Refusal):
        assert verdict.code in {"invalid", "unknown_type"}
        assert verdict.ref is None or protocol.CLIENT_ID_MAX >= len(verdict.ref) > 0
        # The answer must be sendable: a WebSocket text frame is UTF-8.
        answer = protocol.error_frame(verdict)
        answer.encode("utf-8")
        assert json.loads(answer)["code"] == verdict.code
        return
    assert isinstance(frame, str), "a binary frame was accepted"
    assert len(frame.encode("utf-8", "surrogatepass")) <= MAX_FRAME
    if isinstance(verdict, (Say, Edit)):
        body = verdict.body
        assert body.strip() and len(body) <= MAX_BODY and "\x00" not in body
        body.encode("utf-8")
    if isinstance(verdict, Say):
        if verdict.client_id is not None:
            assert 0 < len(verdict.client_id) <= protocol.CLIENT_ID_MAX and verdict.client_id.isprintable()
            verdict.client_id.encode("utf-8")
        try:
            obj = json.loads(frame)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            assert verdict.body == frame  # bare text is the body, untouched
    if isinstance(verdict, (Edit, Delete)):
        assert type(verdict.seq) is int and 0 < verdict.seq < 2**63


def test_a_lone_surrogate_client_id_is_not_echoed_back_as_ref(limits):
    refusal = parse(json.dumps({"type": "nope", "client_id": "\ud800"}))
    assert refusal.code == "unknown_type"
    protocol.error_frame(refusal).encode("utf-8")


def test_a_seq_beyond_64_bits_is_invalid(limits):
    refusal = parse(json.dumps({"type": "delete", "seq": 2**64}))
    assert isinstance(refusal, Refusal) and refusal.code == "invalid"


# The consumer --------------------------------------------------------------------------------


class Room:
    """Three sockets in the lobby and what the test knows the room holds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fuzzer: Any, sender: Any, observer: Any) -> None:
        self.loop = loop
        self.fuzzer, self.sender, self.observer = fuzzer, sender, observer
        self.seq = 0
        self.by_client_id: dict[str, tuple[int, str]] = {}  # the fuzzer's stored messages
        self.rounds = 0


async def server_frame(sock: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame the server sent, checked to be sendable UTF-8 JSON text."""
    output = await sock.comm.receive_output(timeout)
    assert output["type"] == "websocket.send", f"the socket was closed: {output}"
    text = output["text"]
    text.encode("utf-8")
    frame = json.loads(text)
    assert isinstance(frame, dict) and isinstance(frame.get("type"), str)
    return frame


async def next_answer(sock: Any) -> dict[str, Any]:
    while True:
        frame = await server_frame(sock)
        if frame["type"] not in ("presence", "typing"):
            return frame


@pytest.fixture
def room(lobby, limits):
    loop = asyncio.new_event_loop()
    async def open_three() -> list[Any]:
        return [await connect("lobby") for _ in range(3)]

    socks = loop.run_until_complete(open_three())
    yield Room(loop, *socks)

    async def close() -> None:
        from choir.fanout import stop_current_hub

        for sock in socks:
            await sock.close()
        await stop_current_hub()

    loop.run_until_complete(close())
    loop.close()


async def exercise(room: Room, frames: list[str | bytes]) -> None:
    stored: list[int] = []
    for frame in frames:
        verdict = parse(frame)
        if isinstance(frame, bytes):
            await room.fuzzer.comm.send_input({"type": "websocket.receive", "bytes": frame})
        else:
            await room.fuzzer.comm.send_input({"type": "websocket.receive", "text": frame})
        if isinstance(verdict, Typing):
            continue
        answer = await next_answer(room.fuzzer)
        if isinstance(verdict, Refusal):
            assert (answer["type"], answer["code"], answer["ref"]) == ("error", verdict.code, verdict.ref), answer
        elif isinstance(verdict, Ping):
            assert answer["type"] == "pong"
        elif isinstance(verdict, Say):
            assert answer["type"] == "message", answer
            known = room.by_client_id.get(verdict.client_id) if verdict.client_id else None
            if known is not None:  # an idempotent retry: the original, nothing new stored
                assert (answer["seq"], answer["body"]) == known
            else:
                room.seq += 1
                assert (answer["seq"], answer["body"], answer["client_id"]) == (room.seq, verdict.body, verdict.client_id)
                stored.append(room.seq)
                if verdict.client_id:
                    room.by_client_id[verdict.client_id] = (room.seq, verdict.body)
        else:  # edit or delete of someone's message, by a guest
            exists = 1 <= verdict.seq <= room.seq
            assert (answer["type"], answer["code"]) == ("error", "forbidden" if exists else "not_found"), answer
    # A normal sender is still heard, after exactly the fuzzer's stored messages, in order.
    room.rounds += 1
    await room.sender.say(f"round {room.rounds}", client_id=f"round-{room.rounds}")
    room.seq += 1
    stored.append(room.seq)
    received = []
    while len(received) < len(stored):
        frame = await next_answer(room.observer)
        assert frame["type"] == "message", frame
        received.append(frame["seq"])
    assert received == stored
    assert frame["body"] == f"round {room.rounds}"
    for sock in (room.fuzzer, room.sender):  # they hear it too, and nothing else is left over
        while (await next_answer(sock))["seq"] != room.seq:
            pass


@pytest.mark.django_db(transaction=True)
@hsettings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=st.lists(frames, min_size=1, max_size=6))
@example(batch=[json.dumps({"type": "delete", "seq": 2**64}), json.dumps({"type": "edit", "seq": 2**63, "body": "x"})])
@example(batch=[json.dumps({"type": "nope", "client_id": "\ud800"}), "", b""])
def test_any_frames_get_their_answer_and_the_room_goes_on_undisturbed(room, batch):
    room.loop.run_until_complete(asyncio.wait_for(exercise(room, batch), 30))
