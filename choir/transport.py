"""The transport adapter: the one module that knows Daphne's, Twisted's and autobahn's insides.

The rest of Choir sees three calls: `Outgoing(...).write(wire)` /
`Outgoing.write_bytes(wire, data)` (write these frames to this socket),
`close(wire, code, farewell)` (say why, then close), and `asgi_close(send,
code)` for sockets without a wire. A socket has a wire only under Daphne and
only while the fast path is on; without one everything goes through plain
ASGI sends, which are slower but rely on nothing private.

What the fast path relies on, checked by `install()` at start-up (from
`ChoirConfig.ready()`) and again, for the parts that exist only on a live
connection, at the first WebSocket:

- Daphne hands the application `send = functools.partial(Server.handle_reply,
  protocol)`; `send.args[0]` is its autobahn protocol object.
- autobahn's `WebSocketProtocol`: `state`/`STATE_OPEN`, `send_queue`,
  `sendData`, `sendCloseFrame`, and `PreparedMessage(...).payloadHybi`
  (a frame built once for many sockets).
- Twisted's `tcp.Server`: `dataBuffer`, `offset`, `_tempDataLen`,
  `_writeDisconnected`, `TLS`, `connected`, `disconnecting`, `socket`
  (write-through, and the measure of what a socket holds queued).

Three patches ride along: `WebSocketFactory.setProtocolOptions(failByDrop=False)`
(an oversized frame is answered with close 1009 instead of a cut connection),
autobahn's module-level `pformat` (it formats its whole configuration per
handshake for a debug line nobody sees), and Daphne's reaper (below).

The reaper: Daphne's `Server.application_checker` walks every connection once
a second to find finished applications and closed sockets. At 16,000
sockets a process that walk was half of an idle worker's CPU (py-spy, the
100,000-listener stage) and a pause in every socket's delivery once a second.
With the patch, a connection is looked at when it disconnects or its
application finishes (`protocol_disconnected`, a done-callback set in
`create_application`), with Daphne's own rules; Daphne's full walk still runs
once a minute, so anything the hooks could miss is reaped as before. It
needs `Server.application_checker`, `protocol_disconnected`,
`create_application(protocol, scope)`, `connections`,
`application_close_timeout` and `daphne.server.reactor`; it is off with the
fast path.

The input queue: Daphne gives every connection an `asyncio.Queue` for what
the client sends, which is three deques and an Event with a fourth: about
3 KB of a socket's ~25 (tracemalloc, 2,000 idle sockets). `InputQueue` does
the same job (`put_nowait` from the protocol, `get` for the application; one
reader) in a few hundred bytes. Daphne's `create_application` is left as it
is; only the `asyncio` it sees has this queue as `Queue`. It needs
`create_application` to name `asyncio.Queue` and nothing else to use it; it
is off with the fast path.

Where an internal is missing, `install()` logs a warning naming it, counts it
(`choir_transport_internals_missing_total{internal=...}`), and turns off only
what needs it (`choir_transport_fast_path{part=...}` goes to 0): an upgrade
costs speed, never correctness. `CHOIR_FAST_PATH = False` turns the fast path
off on purpose.

Why write-through: Twisted's `transport.write` never writes at once: it
queues the bytes and registers the socket for writability, so each frame
costs two epoll_ctl calls and a reactor callback, and autobahn's `sendData`
formats a debug line per call. Fanned out to thousands of sockets that is
most of the server's time. When nothing is queued on a plain TCP connection
the bytes go straight to the socket, as asyncio's own transports do; whatever
the kernel does not take goes to Twisted's queue, so order is kept.

Slow readers: what Twisted and autobahn hold for one socket is capped at
`CHOIR_MAX_QUEUED_BYTES`. Past it the socket gets its `closing` frame and
close 4408 behind what is queued, and nothing more is queued for it. A reader
that has stopped cannot take those either: autobahn's close-handshake timeout
(one second) then aborts the TCP connection, which frees the queue. Either
way the client resumes with `?after=`.

Longer than Choir's other modules on purpose: the point is that every such
detail lives here and nowhere else, and half of it is the start-up checks.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import logging
import time
import types
from dataclasses import dataclass, field
from typing import Any, Callable

from choir import metrics
from choir.conf import settings
from choir.protocol import Close

log = logging.getLogger("choir.transport")

try:  # autobahn's value, where it still has one; checked again by install()
    from autobahn.websocket.protocol import WebSocketProtocol as _AutobahnProtocol

    OPEN = _AutobahnProtocol.STATE_OPEN
except Exception:  # pragma: no cover - only without autobahn
    OPEN = 3

# The parts of the adapter that can be on or off, each with what it needs.
WRITE_THROUGH = "write_through"  # wires: prepared frames, write-through, the queue cap, protocol close codes
CLOSE_1009 = "close_1009"
QUIET_HANDSHAKE = "quiet_handshake"
REAPER = "reaper"  # Daphne's connections reaped as they end, not by a walk of all of them each second
INPUT_QUEUE = "input_queue"  # a lean per-connection input queue for Daphne instead of asyncio.Queue
PARTS = (WRITE_THROUGH, CLOSE_1009, QUIET_HANDSHAKE, REAPER, INPUT_QUEUE)
FULL_REAP_EVERY = 60.0  # seconds between Daphne's own walks, with the reaper on

# What an ASGI application may close with under autobahn (and any server): 1000, 3000-4999.
NORMAL_CLOSURE = 1000

_TCP_SERVER_CLASS_ATTRIBUTES = ("dataBuffer", "offset", "_writeDisconnected", "TLS", "connected", "disconnecting", "write")
_TCP_SERVER_INSTANCE_ATTRIBUTES = ("_tempDataLen", "socket")
_AUTOBAHN_METHODS = ("sendData", "sendCloseFrame")


@dataclass
class State:
    """What install() found and turned on in this process."""

    installed: bool = False
    on: dict[str, bool] = field(default_factory=lambda: {part: False for part in PARTS})
    missing: list[str] = field(default_factory=list)
    live_checked: bool = False
    prepared_message: Any = None
    tcp_server: Any = None
    daphne_protocol: Any = None


state = State()


# Wires and frames -------------------------------------------------------------


class Wire:
    """One Daphne WebSocket as the fast path sees it: its autobahn protocol and who to tell when it falls behind."""

    __slots__ = ("protocol", "fell_behind")

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        # Set by the socket's owner (the consumer); called once, synchronously,
        # when more than CHOIR_MAX_QUEUED_BYTES is queued for this socket.
        self.fell_behind: Callable[[], None] | None = None

    @property
    def open(self) -> bool:
        return self.protocol.state == OPEN


class Outgoing:
    """A server frame on its way to many sockets."""

    __slots__ = ("text", "_message", "_prepared")

    def __init__(self, text: str) -> None:
        self.text = text
        self._message: dict[str, Any] | None = None
        self._prepared: Any = None

    @property
    def message(self) -> dict[str, Any]:
        """The ASGI message, for sockets without a wire."""
        if self._message is None:
            self._message = {"type": "websocket.send", "text": self.text}
        return self._message

    @property
    def frame_bytes(self) -> bytes:
        """The whole WebSocket frame, header included, as it goes on the wire."""
        if self._prepared is None:
            # Server frames are never masked and Daphne negotiates no compression.
            self._prepared = state.prepared_message(self.text.encode("utf-8"), False, False, False)
        return self._prepared.payloadHybi

    def write(self, wire: Wire) -> None:
        """Write on a wire, if it is still open."""
        Outgoing.write_bytes(wire, self.frame_bytes)

    @staticmethod
    def joined(outgoing: list[Outgoing]) -> bytes:
        """Several frames back to back: one write, one syscall, for a whole batch."""
        return outgoing[0].frame_bytes if len(outgoing) == 1 else b"".join(o.frame_bytes for o in outgoing)

    @staticmethod
    def write_bytes(wire: Wire, data: bytes) -> None:
        protocol = wire.protocol
        if protocol.state != OPEN:
            return
        if protocol.send_queue:  # autobahn's own queue (closing handshakes, chopped writes) goes first
            protocol.sendData(data)
        elif _write_through(protocol.transport, data):
            return  # the hot path: the kernel took it all
        if held_bytes(protocol) > settings.CHOIR_MAX_QUEUED_BYTES:
            _fell_behind(wire)


def _write_through(transport: Any, data: bytes) -> bool:
    """Write `data` on a Twisted transport, at once if nothing is queued before it; True if the kernel took it all."""
    if (
        type(transport) is state.tcp_server
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport.dataBuffer
        and not transport._tempDataLen
    ):
        try:
            sent = transport.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # A dead peer: Twisted's own write finds out and closes it properly.
            sent = 0
        if sent == len(data):
            return True
        metrics.WRITES_QUEUED.inc()
        data = data[sent:]
    transport.write(data)
    return False


def held_bytes(protocol: Any) -> int:
    """Bytes this server holds for one socket: Twisted's write queue plus autobahn's."""
    transport = protocol.transport
    if not hasattr(transport, "_tempDataLen"):
        transport = getattr(transport, "transport", None)  # TLS wraps the TCP transport
    try:
        held = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except AttributeError:
        held = 0  # a transport we cannot measure: the ping timeout still bounds it
    if protocol.send_queue:
        held += sum(len(chunk) for chunk, _ in protocol.send_queue)
    return held


def _fell_behind(wire: Wire) -> None:
    if not wire.open:
        return
    metrics.SLOW_READERS_CLOSED.inc()
    notify, wire.fell_behind = wire.fell_behind, None
    if notify is not None:
        notify()  # the owner logs and calls close() with its farewell
    if wire.open:
        log.warning("a socket fell more than %d bytes behind in reading; closing it with 4408", settings.CHOIR_MAX_QUEUED_BYTES)
        close(wire, Close.SLOW_READER, None)


def close(wire: Wire, code: int, farewell: str | None) -> None:
    """Write `farewell` (the `closing` frame), then a close frame with `code`, any code at all.

    Autobahn lets an application close with 1000 and 3000-4999 only; protocol
    codes (1001 restart, 1013 try again) are written here directly. Both go
    behind whatever is queued, past the cap: this is how a slow reader is let go.
    """
    protocol = wire.protocol
    if protocol.state != OPEN:
        return
    if farewell is not None:
        protocol.sendData(Outgoing(farewell).frame_bytes)
    protocol.sendCloseFrame(code=code, isReply=False)


async def asgi_close(send: Callable[[dict[str, Any]], Any], code: int) -> None:
    """Close a socket without a wire, with `code` where the server allows it.

    Under Daphne autobahn refuses 1001 and 1013 from an application (it raises
    before sending anything); the socket then closes with 1000, and its
    `closing` frame, sent just before, still carries the real code.
    """
    try:
        await send({"type": "websocket.close", "code": code})
    except Exception:
        if code == NORMAL_CLOSURE or 3000 <= code <= 4999:
            raise
        log.debug("the server refused close code %s; closing with 1000", code)
        await send({"type": "websocket.close", "code": NORMAL_CLOSURE})


# Finding the wire ---------------------------------------------------------------


class WireMiddleware:
    """Put a socket's `Wire` in the scope as "choir.wire", when the fast path is on.

    A plain function returning the inner coroutine, so no middleware frame
    stays alive per socket.
    """

    def __init__(self, application: Any) -> None:
        self.application = application

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and state.on[WRITE_THROUGH]:
            wire = wire_for(send)
            if wire is not None:
                scope["choir.wire"] = wire
        return self.application(scope, receive, send)


def wire_for(send: Any) -> Wire | None:
    """The wire behind Daphne's `send`, or None (another server, a test communicator, fast path off)."""
    if type(send) is not functools.partial or not send.args:
        return None
    protocol = send.args[0]
    if not isinstance(protocol, state.daphne_protocol):
        return None
    if not state.live_checked:
        state.live_checked = True
        missing = _live_missing(protocol)
        if missing:
            _report(missing, [WRITE_THROUGH])
            return None
    return Wire(protocol)


# Start-up checks ---------------------------------------------------------------


def install() -> State:
    """Check the internals the adapter relies on and turn on what they allow. Idempotent."""
    if state.installed:
        return state
    state.installed = True
    for part in PARTS:
        metrics.TRANSPORT_FAST_PATH.labels(part).set(0)

    # Checked even when switched off, so the log tells before it is switched on.
    write_through_missing = _write_through_missing()
    if write_through_missing:
        _report(write_through_missing, [WRITE_THROUGH])
    elif not settings.CHOIR_FAST_PATH:
        log.info("transport fast path off (CHOIR_FAST_PATH): every socket uses plain ASGI sends")
    else:
        _turn_on(WRITE_THROUGH)

    missing = _close_1009_missing()
    if missing:
        _report(missing, [CLOSE_1009])
    else:
        _patch_close_1009()
        _turn_on(CLOSE_1009)

    missing = _quiet_handshake_missing()
    if missing:
        _report(missing, [QUIET_HANDSHAKE])
    else:
        from autobahn.websocket import protocol as autobahn_protocol

        autobahn_protocol.pformat = lambda obj, *args, **kwargs: "(configuration not formatted)"
        _turn_on(QUIET_HANDSHAKE)

    missing = _reaper_missing()
    if missing:
        _report(missing, [REAPER])
    elif settings.CHOIR_FAST_PATH:
        _patch_reaper()
        _turn_on(REAPER)

    missing = _input_queue_missing()
    if missing:
        _report(missing, [INPUT_QUEUE])
    elif settings.CHOIR_FAST_PATH:
        _patch_input_queue()
        _turn_on(INPUT_QUEUE)
    return state


def _turn_on(part: str) -> None:
    state.on[part] = True
    metrics.TRANSPORT_FAST_PATH.labels(part).set(1)


def _report(missing: list[str], parts: list[str]) -> None:
    for part in parts:
        state.on[part] = False
        metrics.TRANSPORT_FAST_PATH.labels(part).set(0)
    for name in missing:
        if name not in state.missing:
            state.missing.append(name)
            metrics.TRANSPORT_MISSING.labels(name).inc()
        log.warning(
            "transport internal missing or changed: %s; %s off (plain ASGI sends instead: slower, still correct)",
            name,
            ", ".join(parts),
        )


def _attribute(path: str) -> Any:
    """`module.attr.attr` by name; raises on anything missing."""
    module_name, _, rest = path.partition(":")
    value: Any = __import__(module_name, fromlist=["_"])
    for part in rest.split(".") if rest else []:
        value = getattr(value, part)
    return value


def _write_through_missing() -> list[str]:
    missing: list[str] = []

    def need(path: str, check: Callable[[Any], bool] = lambda value: True) -> Any:
        try:
            value = _attribute(path)
            if check(value):
                return value
        except Exception:
            pass
        missing.append(path)
        return None

    server = need("daphne.server:Server.handle_reply", inspect.iscoroutinefunction)
    need("daphne.server:partial", lambda value: value is functools.partial)
    daphne_protocol = need("daphne.ws_protocol:WebSocketProtocol", inspect.isclass)
    autobahn_protocol = need("autobahn.websocket.protocol:WebSocketProtocol", inspect.isclass)
    need("autobahn.websocket.protocol:WebSocketProtocol.STATE_OPEN", lambda value: value == OPEN)
    for method in _AUTOBAHN_METHODS:
        need(f"autobahn.websocket.protocol:WebSocketProtocol.{method}", callable)
    prepared = need("autobahn.websocket.protocol:PreparedMessage", _frames_as_expected)
    tcp_server = need("twisted.internet.tcp:Server", inspect.isclass)
    if tcp_server is not None:
        for name in _TCP_SERVER_CLASS_ATTRIBUTES:
            if not hasattr(tcp_server, name):
                missing.append(f"twisted.internet.tcp:Server.{name}")
    if daphne_protocol is not None and autobahn_protocol is not None and not issubclass(daphne_protocol, autobahn_protocol):
        missing.append("daphne.ws_protocol:WebSocketProtocol (no longer autobahn's)")
    if server is not None and "protocol" not in inspect.signature(server).parameters:
        missing.append("daphne.server:Server.handle_reply(protocol, message)")
    if not missing:
        state.prepared_message, state.tcp_server, state.daphne_protocol = prepared, tcp_server, daphne_protocol
    return missing


def _frames_as_expected(prepared_message: Any) -> bool:
    # An unmasked text frame "hi": FIN + opcode 1, length 2, the payload.
    return prepared_message(b"hi", False, False, False).payloadHybi == b"\x81\x02hi"


def _live_missing(protocol: Any) -> list[str]:
    """What exists only on a live connection: autobahn's queue, Twisted's socket and counters."""
    missing = []
    if not isinstance(getattr(protocol, "send_queue", None), collections.deque):
        missing.append("autobahn WebSocketProtocol.send_queue (a deque)")
    transport = getattr(protocol, "transport", None)
    if type(transport) is state.tcp_server:
        for name in _TCP_SERVER_INSTANCE_ATTRIBUTES:
            if not hasattr(transport, name):
                missing.append(f"twisted.internet.tcp:Server().{name}")
        if not callable(getattr(getattr(transport, "socket", None), "send", None)):
            missing.append("twisted.internet.tcp:Server().socket.send")
    return missing


def _close_1009_missing() -> list[str]:
    try:
        factory = _attribute("daphne.ws_protocol:WebSocketFactory")
        if "failByDrop" in inspect.signature(factory.setProtocolOptions).parameters:
            return []
    except Exception:
        pass
    return ["daphne.ws_protocol:WebSocketFactory.setProtocolOptions(failByDrop=)"]


def _patch_close_1009() -> None:
    """Under Daphne, answer a frame over the size limit with close code 1009.

    Autobahn fails such a connection by cutting TCP ("failByDrop"), so the
    client sees 1006 and cannot tell why. With failByDrop off it sends close
    1009 at the frame's header; the rest of the frame is read and discarded,
    never buffered, and the connection is dropped after the closing handshake
    (about a second at most).
    """
    from daphne.ws_protocol import WebSocketFactory

    original = WebSocketFactory.__init__
    if getattr(original, "choir_polite", False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.setProtocolOptions(failByDrop=False)

    __init__.choir_polite = True  # type: ignore[attr-defined]
    WebSocketFactory.__init__ = __init__  # type: ignore[method-assign]


def _quiet_handshake_missing() -> list[str]:
    try:
        from autobahn.websocket import protocol as autobahn_protocol

        if callable(getattr(autobahn_protocol, "pformat", None)):
            return []
    except Exception:
        pass
    return ["autobahn.websocket.protocol:pformat"]


def _reaper_missing() -> list[str]:
    try:
        from daphne import server as daphne_server

        server = daphne_server.Server
        missing = [
            f"daphne.server:Server.{name}"
            for name in ("application_checker", "protocol_disconnected", "create_application")
            if not callable(getattr(server, name, None))
        ]
        if not missing and list(inspect.signature(server.create_application).parameters) != ["self", "protocol", "scope"]:
            missing.append("daphne.server:Server.create_application(protocol, scope)")
        names = server.__init__.__code__.co_names + server.run.__code__.co_names  # `connections` is made in run()
        missing += [f"daphne.server:Server().{name}" for name in ("connections", "application_close_timeout") if name not in names]
        if not callable(getattr(getattr(daphne_server, "reactor", None), "callLater", None)):
            missing.append("daphne.server:reactor.callLater")
        return missing
    except Exception:
        return ["daphne.server:Server"]


def _patch_reaper() -> None:
    """Reap Daphne's connections as they end instead of walking all of them every second (see the docstring)."""
    from daphne import server as daphne_server

    server_class = daphne_server.Server
    if getattr(server_class.application_checker, "choir_reaper", False):
        return
    full_walk = server_class.application_checker
    disconnected = server_class.protocol_disconnected
    create_application = server_class.create_application

    def due(server: Any) -> set[Any]:
        found = server.__dict__.get("_choir_due")
        if found is None:
            found = server._choir_due = set()
        return found

    def became_due(server: Any, protocol: Any, _finished: Any) -> None:
        due(server).add(protocol)

    def protocol_disconnected(self: Any, protocol: Any) -> None:
        disconnected(self, protocol)
        due(self).add(protocol)

    def create_application_watched(self: Any, protocol: Any, scope: Any) -> Any:
        queue = create_application(self, protocol, scope)
        instance = self.connections.get(protocol, {}).get("application_instance")
        if instance is not None:
            # A partial, not a closure: this is held for every open socket.
            instance.add_done_callback(functools.partial(became_due, self, protocol))
        return queue

    def application_checker(self: Any) -> None:
        now = time.monotonic()
        if now - self.__dict__.get("_choir_walked_at", 0.0) > FULL_REAP_EVERY:
            self._choir_walked_at = now
            full_walk(self)  # Daphne's own walk; it schedules the next check itself
            return
        pending = due(self)
        for protocol in list(pending):
            if _reap(self, protocol):
                pending.discard(protocol)
        daphne_server.reactor.callLater(1, self.application_checker)

    application_checker.choir_reaper = True  # type: ignore[attr-defined]
    application_checker.choir_originals = {  # type: ignore[attr-defined]
        "application_checker": full_walk,
        "protocol_disconnected": disconnected,
        "create_application": create_application,
    }
    server_class.protocol_disconnected = protocol_disconnected
    server_class.create_application = create_application_watched
    server_class.application_checker = application_checker


def _reap(server: Any, protocol: Any) -> bool:
    """Daphne's rules for one connection; True once there is nothing left to watch."""
    details = server.connections.get(protocol)
    if details is None:
        return True
    disconnected = details.get("disconnected")
    instance = details.get("application_instance")
    if disconnected and time.time() - disconnected > server.application_close_timeout and instance and not instance.done():
        log.warning("application instance for %r took too long to shut down and was killed", protocol)
        instance.cancel()
    if instance is not None and instance.done():
        try:
            exception = instance.exception()
        except asyncio.CancelledError:
            exception = None
        if isinstance(exception, KeyboardInterrupt):
            server.stop()
        elif exception is not None:
            log.error("Exception inside application: %s", exception, exc_info=exception)
            if not disconnected:
                protocol.handle_exception(exception)
        del details["application_instance"]
        instance = None
    if instance is None and disconnected:
        del server.connections[protocol]
        return True
    # Still running after a disconnect: look again next second. Finished while
    # the socket is open: its disconnect brings it back.
    return instance is None


class InputQueue:
    """What a client sent, waiting for the application: asyncio.Queue's job for one reader, in a fraction of its memory."""

    __slots__ = ("items", "head", "waiter")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.head = 0  # items before it are taken; compacted now and then, so a flood costs no O(n) pops
        self.waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while self.head == len(self.items):
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        item = self.items[self.head]
        self.items[self.head] = None
        self.head += 1
        if self.head == len(self.items):
            self.items.clear()
            self.head = 0
        elif self.head > 64 and self.head * 2 > len(self.items):
            del self.items[: self.head]
            self.head = 0
        return item

    def qsize(self) -> int:
        return len(self.items) - self.head

    def empty(self) -> bool:
        return self.qsize() == 0


class _AsyncioForDaphne(types.ModuleType):
    """asyncio as daphne.server sees it: the same module, but `Queue` is InputQueue."""

    Queue = InputQueue

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def _input_queue_missing() -> list[str]:
    try:
        from daphne import server as daphne_server

        missing = []
        seen = daphne_server.__dict__.get("asyncio")
        if seen is not asyncio and not isinstance(seen, _AsyncioForDaphne):
            missing.append("daphne.server:asyncio")
        originals = getattr(daphne_server.Server.application_checker, "choir_originals", {})
        create = originals.get("create_application", daphne_server.Server.create_application)
        if "Queue" not in create.__code__.co_names:
            missing.append("daphne.server:Server.create_application (asyncio.Queue)")
        # Nothing else of Daphne's server may make or expect an asyncio.Queue.
        for name, value in vars(daphne_server.Server).items():
            value = originals.get(name, value)
            code = getattr(value, "__code__", None)
            if code is not None and value is not create and "Queue" in code.co_names:
                missing.append(f"daphne.server:Server.{name} (uses asyncio.Queue)")
        return missing
    except Exception:
        return ["daphne.server"]


def _patch_input_queue() -> None:
    from daphne import server as daphne_server

    if not isinstance(daphne_server.__dict__.get("asyncio"), _AsyncioForDaphne):
        daphne_server.asyncio = _AsyncioForDaphne("asyncio")  # type: ignore[attr-defined]
