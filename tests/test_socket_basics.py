"""The socket protocol's basic exchange: hello, say, ack, bare text, ping."""

import pytest

from tests.support import connect

pytestmark = pytest.mark.django_db(transaction=True)


async def test_it_says_hello_first_with_room_you_seq_and_online(lobby):
    sock = await connect("lobby", hello=False)
    hello = await sock.recv()
    assert hello["type"] == "hello"
    assert hello["room"] == {"slug": "lobby", "title": "Lobby", "topic": lobby.topic, "mode": "open"}
    assert hello["you"]["can_post"] is True
    assert hello["seq"] == 0
    assert hello["you"]["name"] in hello["online"]
    await sock.close()


async def test_a_bare_text_frame_is_posted_and_acknowledged(lobby):
    sock = await connect("lobby")
    await sock.send("Hello choir, welcome!")
    ack = await sock.expect("message")
    assert ack["body"] == "Hello choir, welcome!"
    assert ack["seq"] == 1
    assert ack["client_id"] is None
    await sock.close()


async def test_ping_gets_pong(lobby):
    sock = await connect("lobby")
    await sock.send({"type": "ping"})
    await sock.expect("pong")
    await sock.close()
