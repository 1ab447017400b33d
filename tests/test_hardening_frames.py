"""Junk frames are refused as `invalid`, cost a token like any other frame,
and never reach the server's catch-all (no `unavailable`, no traceback)."""

from __future__ import annotations

import logging

import pytest

from tests.support import connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def choir_errors():
    """ERROR records from Choir's loggers (they do not propagate to the root)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.ERROR)
    loggers = [logging.getLogger("choir"), logging.getLogger()]
    for logger in loggers:
        logger.addHandler(handler)
    yield records
    for logger in loggers:
        logger.removeHandler(handler)


def nested(depth: int) -> str:
    return '{"type": "say", "body": "hi", "extra": ' + "[" * depth + "]" * depth + "}"


async def test_a_deeply_nested_frame_is_invalid_and_the_socket_stays(lobby, choir_errors):
    sock = await connect("lobby")
    await sock.send(nested(3000))
    error = await sock.expect("error")
    assert error["code"] == "invalid" and "nested" in error["detail"]
    await sock.say("still singing")
    assert (await sock.expect("message"))["body"] == "still singing"
    assert not choir_errors, [r.getMessage() for r in choir_errors]


async def test_a_number_python_cannot_hold_is_invalid_not_a_message(lobby, settings, choir_errors):
    settings.CHOIR_MAX_BODY_CHARS = 10_000  # so that posting it as text would not be refused for length
    sock = await connect("lobby")
    await sock.send('{"type": "delete", "seq": ' + "9" * 5000 + "}")
    assert (await sock.expect("error"))["code"] == "invalid"
    await sock.nothing()
    assert not choir_errors


async def test_junk_frames_cost_tokens_until_refused_as_rate_limited(lobby, settings, choir_errors):
    settings.CHOIR_RATE_PER_SECOND = 0.01  # no refill during the test: the counts are exact
    settings.CHOIR_RATE_BURST = 5
    settings.CHOIR_FLOOD_STRIKES = 100
    sock = await connect("lobby")
    for _ in range(8):
        await sock.send(nested(3000))
    codes = [(await sock.expect("error"))["code"] for _ in range(8)]
    assert codes == ["invalid"] * 5 + ["rate_limited"] * 3
    assert not choir_errors


async def test_typing_frames_cost_tokens_and_a_typing_flood_is_closed(lobby, settings):
    settings.CHOIR_RATE_PER_SECOND = 0.01
    settings.CHOIR_RATE_BURST = 5
    settings.CHOIR_FLOOD_STRIKES = 10
    sock = await connect("lobby")
    for _ in range(5):
        await sock.send({"type": "typing"})
    await sock.say("after typing", client_id="late")
    error = await sock.expect("error")
    assert error["code"] == "rate_limited" and error["ref"] == "late"
    # Refused typing frames get no answer, but still count toward the flood limit.
    for _ in range(20):
        await sock.send({"type": "typing"})
    assert await sock.closed() == 4429
