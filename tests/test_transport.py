"""The transport adapter (choir/transport.py): its start-up checks, the fallback, the queue cap.

The unit tests fake what Daphne hands the application; the e2e tests run real
`manage.py serve` processes: one with the fast path switched off, one whose
autobahn lost an internal (an upgrade that renamed it), one flooding a room
while a client never reads.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import os
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websockets
from prometheus_client import REGISTRY

from choir import transport
from choir.transport import OPEN, Outgoing, State, WireMiddleware
from tests.support import raw_handshake, ws_frames

BROKEN = Path(__file__).resolve().parent / "transport_broken"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def fresh(monkeypatch, settings):
    """A transport adapter not yet installed, with the fast path allowed."""
    settings.CHOIR_FAST_PATH = True
    monkeypatch.setattr(transport, "state", State())
    return transport


def daphne_send(protocol: Any) -> functools.partial:
    """What Daphne hands the application: its reply coroutine bound to the protocol object."""

    async def handle_reply(protocol: Any, message: dict) -> None:
        pass

    return functools.partial(handle_reply, protocol)


def daphne_protocol(**attributes: Any) -> Any:
    from daphne.ws_protocol import WebSocketProtocol

    protocol = WebSocketProtocol.__new__(WebSocketProtocol)
    protocol.__dict__.update(attributes)
    return protocol


def scope_after_middleware(send: Any) -> dict:
    seen = {}

    def app(scope, receive, send):
        seen.update(scope)

    WireMiddleware(app)({"type": "websocket"}, None, send)
    return seen


# Start-up checks -------------------------------------------------------------------


def test_every_internal_the_fast_path_relies_on_is_there_with_the_pinned_versions(fresh):
    state = fresh.install()
    assert state.missing == []
    assert state.on == {
        "write_through": True, "close_1009": True, "quiet_handshake": True, "reaper": True, "input_queue": True
    }
    assert sample("choir_transport_fast_path", part="write_through") == 1


def test_a_missing_internal_is_named_counted_and_the_fast_path_falls_back(fresh, monkeypatch, caplog):
    monkeypatch.setattr(logging.getLogger("choir"), "propagate", True)  # the choir loggers skip caplog otherwise
    name = "autobahn.websocket.protocol:PreparedMessage"
    before = sample("choir_transport_internals_missing_total", internal=name)
    monkeypatch.delattr("autobahn.websocket.protocol.PreparedMessage")

    state = fresh.install()

    assert state.missing == [name]
    assert any(name in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert sample("choir_transport_internals_missing_total", internal=name) == before + 1
    assert sample("choir_transport_fast_path", part="write_through") == 0
    # The patches that do not need it still apply.
    assert state.on["close_1009"] and state.on["quiet_handshake"]
    # A socket from Daphne gets no wire: the consumer and the hub use plain ASGI sends.
    protocol = daphne_protocol(send_queue=collections.deque(), state=OPEN)
    assert "choir.wire" not in scope_after_middleware(daphne_send(protocol))


def test_a_changed_shape_counts_as_missing(fresh, monkeypatch):
    from autobahn.websocket.protocol import WebSocketProtocol

    monkeypatch.setattr(WebSocketProtocol, "STATE_OPEN", 99)
    state = fresh.install()
    assert "autobahn.websocket.protocol:WebSocketProtocol.STATE_OPEN" in state.missing
    assert not state.on["write_through"]


def test_the_switch_turns_the_fast_path_off(fresh, settings):
    settings.CHOIR_FAST_PATH = False
    state = fresh.install()
    assert state.missing == [] and not state.on["write_through"]
    protocol = daphne_protocol(send_queue=collections.deque(), state=OPEN)
    assert "choir.wire" not in scope_after_middleware(daphne_send(protocol))


def test_what_exists_only_on_a_live_connection_is_checked_at_the_first_socket(fresh):
    fresh.install()
    # Everything as expected: the socket gets its wire.
    good = daphne_protocol(send_queue=collections.deque(), state=OPEN)
    assert scope_after_middleware(daphne_send(good))["choir.wire"].protocol is good

    fresh.state.live_checked = False
    renamed = daphne_protocol(outgoing_queue=collections.deque(), state=OPEN)  # no send_queue
    assert "choir.wire" not in scope_after_middleware(daphne_send(renamed))
    assert any("send_queue" in name for name in fresh.state.missing)
    assert not fresh.state.on["write_through"]
    assert "choir.wire" not in scope_after_middleware(daphne_send(good))


def test_only_daphne_s_sends_get_a_wire(fresh):
    fresh.install()

    async def plain_send(message):
        pass

    assert "choir.wire" not in scope_after_middleware(plain_send)
    assert "choir.wire" not in scope_after_middleware(functools.partial(plain_send))


# The reaper ----------------------------------------------------------------------


class Peer:
    """Stands for a Daphne protocol object: hashable, and told of its application's exception."""

    def __init__(self) -> None:
        self.exceptions: list[BaseException] = []

    def handle_exception(self, exception: BaseException) -> None:
        self.exceptions.append(exception)


async def test_daphne_connections_are_reaped_as_they_end_without_walking_the_rest(fresh, monkeypatch):
    from daphne import server as daphne_server

    fresh.install()
    scheduled = []
    monkeypatch.setattr(daphne_server.reactor, "callLater", lambda delay, fn, *a: scheduled.append(fn))
    release: dict[Peer, asyncio.Event] = {}

    async def application(scope, receive, send):
        await release[scope["peer"]].wait()
        if scope.get("fail"):
            raise RuntimeError("the application failed")

    server = daphne_server.Server.__new__(daphne_server.Server)
    server.connections, server.application_close_timeout, server.application = {}, 10, application
    server._choir_walked_at = time.monotonic()  # Daphne's own walk is not due for a minute
    done, running, failed, stuck = (Peer() for _ in range(4))
    for peer in (done, running, failed, stuck):
        release[peer] = asyncio.Event()
        server.protocol_connected(peer)
        server.create_application(peer, {"type": "websocket", "peer": peer, "fail": peer is failed})
    assert server.__dict__.get("_choir_due", set()) == set()  # nothing has ended: nothing to look at

    release[done].set()
    release[failed].set()
    await asyncio.sleep(0.01)
    server.protocol_disconnected(done)
    server.protocol_disconnected(stuck)
    assert server._choir_due == {done, failed, stuck}  # the running, connected one is never looked at
    server.application_checker()
    assert done not in server.connections
    assert failed in server.connections and "application_instance" not in server.connections[failed]
    assert [str(e) for e in failed.exceptions] == ["the application failed"]  # Daphne's rule: tell the protocol
    assert running in server.connections and stuck in server.connections
    assert server._choir_due == {stuck}  # disconnected, application still running: looked at again
    assert scheduled == [server.application_checker]

    server.application_close_timeout = 0  # the stuck one has now taken too long: cancelled, then reaped
    server.application_checker()
    await asyncio.sleep(0.01)
    server.application_checker()
    assert stuck not in server.connections and server._choir_due == set()

    # Once a minute Daphne's own walk runs instead, as a net under the hooks.
    server.protocol_disconnected(failed)
    server._choir_due.clear()  # as if a hook had missed it
    server._choir_walked_at = 0.0
    server.application_checker()
    assert failed not in server.connections and running in server.connections
    release[running].set()
    await asyncio.sleep(0.01)


def test_without_the_fast_path_daphne_keeps_its_own_walk(fresh, settings, monkeypatch):
    from daphne import server as daphne_server

    settings.CHOIR_FAST_PATH = False
    # Undo a patch an earlier install() in this process made (monkeypatch puts it back after).
    for name, original in getattr(daphne_server.Server.application_checker, "choir_originals", {}).items():
        monkeypatch.setattr(daphne_server.Server, name, original)
    monkeypatch.setattr(daphne_server, "asyncio", asyncio)
    walk = daphne_server.Server.application_checker
    state = fresh.install()
    assert not state.on["reaper"] and daphne_server.Server.application_checker is walk
    assert not state.on["input_queue"] and daphne_server.asyncio is asyncio


# The queue cap ---------------------------------------------------------------------


class QueueingTransport:
    """A Twisted-like transport whose peer never reads: every write stays queued."""

    def __init__(self) -> None:
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0

    def write(self, data: bytes) -> None:
        self._tempDataLen += len(data)


class FakeAutobahn:
    def __init__(self) -> None:
        self.state = OPEN
        self.send_queue: collections.deque = collections.deque()
        self.transport = QueueingTransport()
        self.closed_with: int | None = None

    def sendData(self, data: bytes) -> None:
        self.transport.write(data)

    def sendCloseFrame(self, code: int, isReply: bool) -> None:
        self.closed_with = code
        self.state = 2  # closing


def test_a_socket_holding_more_than_the_cap_is_closed_with_4408_once(fresh, settings):
    fresh.install()
    settings.CHOIR_MAX_QUEUED_BYTES = 100_000
    before = sample("choir_slow_readers_closed_total")
    protocol = FakeAutobahn()
    wire = transport.Wire(protocol)
    told = []
    wire.fell_behind = lambda: (told.append(True), transport.close(wire, 4408, '{"type": "closing", "code": 4408}'))
    frame = Outgoing("x" * 30_000)

    for _ in range(3):
        frame.write(wire)
    assert protocol.closed_with is None and told == []
    frame.write(wire)  # 120 kB held: over the cap
    assert protocol.closed_with == 4408 and told == [True]
    held = transport.held_bytes(protocol)
    for _ in range(10):
        frame.write(wire)  # nothing more is queued for it
    assert transport.held_bytes(protocol) == held
    assert told == [True]
    assert sample("choir_slow_readers_closed_total") == before + 1


async def test_without_a_wire_a_protocol_close_code_the_server_refuses_becomes_1000():
    sent = []

    async def autobahn_like(message):
        code = message["code"]
        if code != 1000 and not 3000 <= code <= 4999:
            raise Exception(f"invalid close code {code}")
        sent.append(code)

    await transport.asgi_close(autobahn_like, 1001)
    await transport.asgi_close(autobahn_like, 4410)
    assert sent == [1000, 4410]


# Real Daphne -----------------------------------------------------------------------


def scrape(server: Any) -> dict:
    from tests.ops_support import scrape as parse

    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        return parse(response.read().decode())


def metric(server: Any, name: str, **labels: str) -> float:
    from tests.ops_support import value

    return value(scrape(server), name, **labels)


async def everyone_gets_everything_in_order(server: Any, count: int = 20) -> None:
    clients = [await websockets.connect(server.ws("lobby", f"name=c{i}")) for i in range(3)]
    for ws in clients:
        await ws_frames(ws, 1, kind="hello")
    for i in range(count):
        await clients[0].send(json.dumps({"type": "say", "body": f"note {i}", "client_id": f"n{i}"}))
    for ws in clients:
        frames = await ws_frames(ws, count, timeout=30)
        assert [f["seq"] for f in frames] == list(range(1, count + 1))
        assert [f["body"] for f in frames] == [f"note {i}" for i in range(count)]
    for ws in clients:
        await ws.close()


async def closing_then_close(ws: Any) -> tuple[dict | None, int | None]:
    closing = None
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "closing":
                closing = frame
    except websockets.ConnectionClosed as closed:
        return closing, closed.rcvd.code if closed.rcvd else None


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_with_the_fast_path_off_delivery_and_goodbyes_go_through_plain_asgi(daphne, lobby):
    server = daphne(extra_env={"CHOIR_FAST_PATH": "0"})
    assert await asyncio.to_thread(metric, server, "choir_transport_fast_path", part="write_through") == 0
    await everyone_gets_everything_in_order(server)
    ws = await websockets.connect(server.ws("lobby"))
    await ws_frames(ws, 1, kind="hello")
    server.stop()
    closing, code = await closing_then_close(ws)
    # Autobahn lets an application close with 1000 or 3000-4999 only: the
    # closing frame carries the real code.
    assert closing is not None and closing["code"] == 1001
    assert code == 1000


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_an_upgrade_that_renames_an_internal_costs_speed_not_delivery(daphne, lobby):
    pythonpath = os.pathsep.join(p for p in (str(BROKEN), os.environ.get("PYTHONPATH", "")) if p)
    server = daphne(extra_env={"PYTHONPATH": pythonpath})
    found = await asyncio.to_thread(scrape, server)
    name = "autobahn.websocket.protocol:PreparedMessage"
    assert found.get(("choir_transport_internals_missing_total", (("internal", name),)), 0) >= 1
    assert found.get(("choir_transport_fast_path", (("part", "write_through"),)), 1) == 0
    assert name in server.log_path.read_text(errors="replace")
    await everyone_gets_everything_in_order(server)


# A reader that never reads while the room floods --------------------------------------


def read_to_the_end(sock: socket.socket, data: bytes) -> tuple[list[dict], int | None, str]:
    """Every text frame and the close code, reading until the server closes or resets; and how it ended."""
    frames: list[dict] = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            return frames, None, "reset"
        if not chunk:
            return frames, None, "eof"
        data += chunk
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
            elif opcode == 0x8:
                return frames, int.from_bytes(payload[:2], "big"), "close"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


FLOOD_MESSAGES, FLOOD_BODY = 400, 60_000  # about 24 MB to every socket in the room


async def flood(poster: Any, reader: Any, first: int) -> None:
    """Post FLOOD_MESSAGES big messages as fast as the socket takes them; both see all, in order."""
    pad = "x" * (FLOOD_BODY - 4)
    for i in range(FLOOD_MESSAGES):
        await poster.send(json.dumps({"type": "say", "body": f"{i:04d}{pad}", "client_id": f"f{first + i}"}))
    for ws in (reader, poster):
        frames = await ws_frames(ws, FLOOD_MESSAGES, timeout=120)
        assert [f["seq"] for f in frames] == list(range(first, first + FLOOD_MESSAGES))
        assert [f["body"][:4] for f in frames] == [f"{i:04d}" for i in range(FLOOD_MESSAGES)]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
async def test_a_reader_that_never_reads_while_the_room_floods_is_let_go_and_memory_stays_bounded(daphne, lobby, settings):
    if not settings.CHOIR_FAST_PATH:
        pytest.skip("plain ASGI sends have no queue to measure; the ping timeout bounds them (docs/operations.md)")
    server = daphne(
        extra_env={
            "CHOIR_RATE_PER_SECOND": "1000",
            "CHOIR_RATE_BURST": "1000",
            "CHOIR_MAX_BODY_CHARS": str(FLOOD_BODY),
            "CHOIR_MAX_FRAME_BYTES": "65000",
            "CHOIR_MAX_QUEUED_BYTES": str(1024 * 1024),
            "CHOIR_PING_INTERVAL": "600",  # only the cap may let it go
            # DEBUG keeps every query with its parameters, here every 60 kB body.
            "DEBUG": "0",
            "SECRET_KEY": "transport-test-" + "s" * 40,
            # Big blocks straight from and back to the kernel, so that RSS
            # follows what is held rather than glibc's heap high-water mark.
            "MALLOC_MMAP_THRESHOLD_": "32768",
        }
    )
    (worker,) = server.worker_pids()
    reader = await websockets.connect(server.ws("lobby", "name=reader"), max_queue=None, max_size=None)
    poster = await websockets.connect(server.ws("lobby", "name=poster"), max_queue=None, max_size=None)
    for ws in (reader, poster):
        await ws_frames(ws, 1, kind="hello")
    # A first flood with nobody behind: the allocator's high-water mark for
    # the flood itself, so the second one measures what the slow reader holds.
    await flood(poster, reader, first=1)
    slow, buffered = await asyncio.to_thread(raw_handshake, server.port, "/ws/rooms/lobby/?name=slow", 65536)
    try:
        await asyncio.sleep(0.5)
        before = rss_bytes(worker)
        await flood(poster, reader, first=FLOOD_MESSAGES + 1)
        after = rss_bytes(worker)

        deadline = time.monotonic() + 20
        while await asyncio.to_thread(metric, server, "choir_slow_readers_closed_total") < 1:
            assert time.monotonic() < deadline, "the slow reader was never closed"
            await asyncio.sleep(0.2)
        frames, code, ended = await asyncio.to_thread(read_to_the_end, slow, buffered)
    finally:
        slow.close()

    # What arrived before the end is in order, a prefix of the second flood.
    seqs = [f["seq"] for f in frames if f["type"] == "message"]
    assert seqs == list(range(FLOOD_MESSAGES + 1, FLOOD_MESSAGES + 1 + len(seqs)))
    assert len(seqs) < FLOOD_MESSAGES
    if ended == "close":
        # It drained what was queued within autobahn's close timeout: the reason and 4408.
        assert code == 4408 and frames[-1] == {"type": "closing", "code": 4408, "reason": frames[-1]["reason"]}
    else:
        # It had stopped reading: a second after the close frame, autobahn drops the connection.
        assert ended in ("reset", "eof")
    assert await asyncio.to_thread(metric, server, "choir_refusals_total", code="close_4408") == 1
    # Measured: about 3 MB with the cap, about 21 MB without it (24 MB sent,
    # about 4 MB of it in the kernel's buffers).
    assert after - before < 10 * 1024 * 1024, f"worker RSS grew by {(after - before) / 1e6:.1f} MB"
    # The others were not disturbed, and stay.
    await poster.send(json.dumps({"type": "say", "body": "still here", "client_id": "last"}))
    assert (await ws_frames(reader, 1, timeout=10))[0]["body"] == "still here"
    await reader.close()
    await poster.close()


def test_under_daphne_full_collections_wait_for_choir_gc_full_every_middle_passes(monkeypatch, settings):
    # A crowd connecting grows the heap steadily; Python's default (a full
    # pass after 10 middle ones) walked a 10,000-socket worker 14 times.
    import gc
    import sys

    from choir import runtime

    settings.CHOIR_GC_FULL_EVERY = 77
    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", sys.modules.get("twisted.internet.reactor", object()))
    monkeypatch.setattr(gc, "freeze", lambda: None)  # this test process keeps its heap collectable
    before = gc.get_threshold()
    try:
        runtime.freeze_startup_heap()
        assert gc.get_threshold() == (before[0], before[1], 77)
    finally:
        gc.set_threshold(*before)


async def test_daphne_s_input_queue_is_the_lean_one_and_keeps_order_across_a_flood(fresh):
    from daphne import server as daphne_server

    state = fresh.install()
    assert state.on["input_queue"] and daphne_server.asyncio.Queue is transport.InputQueue
    queue = daphne_server.asyncio.Queue()
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait({"n": 0})
    assert await waiting == {"n": 0}
    for n in range(1, 1001):  # a flood queued before the application reads: compacted, in order
        queue.put_nowait({"n": n})
    assert queue.qsize() == 1000
    assert [(await queue.get())["n"] for _ in range(1000)] == list(range(1, 1001))
    assert queue.empty()
    cancelled = asyncio.ensure_future(queue.get())  # a reader cancelled while waiting loses nothing
    await asyncio.sleep(0)
    cancelled.cancel()
    queue.put_nowait({"n": "kept"})
    assert (await queue.get())["n"] == "kept"
