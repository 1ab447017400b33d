"""Client worker processes: many real WebSocket clients per process.

The orchestrator (bench.scenarios) drives each worker over a pipe with
a few commands: connect sockets, send a step's messages, drain (wait until
every member has what was sent to its room), close. Every payload carries
its step, sender, number and send time between `~~` marks, so a receiver
finds it with two `str.find` calls whatever JSON the server wraps it in.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import resource
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.lean import LeanSocket, open_lean

# Not "@": Choir reads "@name" as a mention and looks the name up, a query
# per batch that real chat pays only for messages that mention someone.
MARK = "~~"
DIALECTS = ("choir", "raw", "asgi", "channels", "socketio")
# Socket.IO 4 over a raw WebSocket: Engine.IO v4 with the websocket transport
# only. The server opens with `0{...}`, the client joins the default namespace
# with `40` and is live once `40{...}` comes back; events are `42[name, data]`;
# the server pings with `2` and expects `3`. A client library would cost a
# thread or a dependency per process for four string checks.
SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket&room={room}"


@dataclass(frozen=True, slots=True)
class Spec:
    """What one worker process talks to."""

    port: int
    dialect: str
    worker: int
    body_bytes: int = 64
    concurrency: int = 64  # handshakes in flight per worker
    open_timeout: float = 30.0
    attempts: int = 5  # handshakes tried per socket before it counts as failed
    source: str | None = None  # loopback source address (127.0.0.x): a port range of its own
    cookie: str | None = None  # a Cookie header (the stage's conductor signs in with a session)
    per_message: bool = False  # keep latencies per message too (the stage: when did the last listener have it?)
    lean: bool = False  # listeners (not senders) on bench/lean.py's socket instead of `websockets` (Choir only)


def payload(step: int, sender: int, n: int, pad: str) -> str:
    return f"{MARK}{step},{sender},{n},{time.time():.6f}{MARK}{pad}"


def encode(dialect: str, text: str, client_id: str) -> str:
    if dialect == "choir":
        return json.dumps({"type": "say", "body": text, "client_id": client_id})
    if dialect == "channels":
        return json.dumps({"message": text})
    if dialect == "socketio":
        return "42" + json.dumps(["say", text])
    return text  # the raw and bare ASGI servers broadcast text as is


@dataclass(eq=False)
class Member:
    ws: ClientConnection | LeanSocket
    room: str
    sender: int | None = None  # this socket's sender id, if it sends
    counts: dict[int, int] = field(default_factory=dict)  # step -> payloads received
    last_n: dict[int, int] = field(default_factory=dict)  # sender -> last n seen
    waiting: tuple[int, asyncio.Future[float | None]] | None = None
    closed: bool = False


class Worker:
    def __init__(self, conn: Connection, spec: Spec) -> None:
        self.conn = conn
        self.spec = spec
        self.members: list[Member] = []
        self.by_room: dict[str, list[Member]] = {}
        self.senders: list[Member] = []
        self.step = -1
        self.latencies: dict[int, array] = {}
        self.by_message: dict[int, array] = {}  # message n -> latencies (per_message only)
        self.first_recv: dict[int, float] = {}
        self.last_recv: dict[int, float] = {}
        self.out_of_order = 0
        self.late = 0
        self.errors = 0
        self.pad = ""
        self.readers: list[asyncio.Task] = []
        self.retries = 0
        self.deadline: float | None = None

    # Commands -------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            command, args = await loop.run_in_executor(None, self.conn.recv)
            if command == "close":
                await self.close()
                self.conn.send(("closed", {}))
                return
            reply = await getattr(self, command)(**args)
            self.conn.send((command, reply))

    async def connect(self, rooms: list[str], senders: dict[int, int], deadline: float | None = None) -> dict[str, Any]:
        """Open one socket per entry of `rooms`; `senders` maps index -> sender id.

        Past `deadline` (time.time()) no new handshake starts: a slow server
        is measured for a bounded time, not waited for.
        """
        self.deadline = deadline
        sem = asyncio.Semaphore(self.spec.concurrency)
        start = time.time()
        retries_before = self.retries
        results = await asyncio.gather(
            *(self._open_member(index, room, senders, sem) for index, room in enumerate(rooms))
        )
        end = time.time()
        # The load generator's own garbage collector: with thousands of sockets
        # open, a full pass took up to 2 s here and landed inside the stage's
        # posts, counted as the server's latency. What is connected now lives
        # until the pool closes: take it out of the collector's passes.
        gc.collect()
        gc.freeze()
        opened = failed = 0
        reasons: dict[str, int] = {}
        for result in results:
            if isinstance(result, str):
                failed += 1
                reasons[result] = reasons.get(result, 0) + 1
            else:
                opened += 1
        return {
            "opened": opened,
            "failed": failed,
            "retries": self.retries - retries_before,
            "reasons": reasons,
            "start": start,
            "end": end,
        }

    async def send(
        self, step: int, mode: str, rate: float, duration: float, start_at: float, stagger: int
    ) -> dict[str, Any]:
        """Send one step's messages: `fixed` rate per sender, or `acked` (wait for each ack)."""
        self.step = step
        self.latencies[step] = array("d")
        self.by_message = {}
        self.pad = "x" * max(0, self.spec.body_bytes - 40)
        run = self._send_fixed if mode == "fixed" else self._send_acked
        counts = await asyncio.gather(*(run(m, step, rate, duration, start_at, stagger) for m in self.senders))
        sent: dict[str, int] = {}
        for member, count in zip(self.senders, counts):
            sent[member.room] = sent.get(member.room, 0) + count
        return {"sent": sent, "end": time.time()}

    async def drain(self, step: int, expected: dict[str, int], timeout: float) -> dict[str, Any]:
        """Wait until each member has what was sent to its room, or `timeout`; then report."""
        deadline = time.monotonic() + timeout
        # Walk the members only once enough payloads have arrived in all: a
        # walk of 5,000 members every 20 ms took the CPU the stage's
        # listeners needed to read what they were waiting for.
        need, polls = 0, 0
        while time.monotonic() < deadline:
            if polls % 50 == 0:  # once a second: members that closed since need nothing more
                need = sum(expected.get(m.room, 0) for m in self.members if not m.closed)
            polls += 1
            if len(self.latencies.get(step, ())) >= need:
                if all(m.counts.get(step, 0) >= expected.get(m.room, 0) for m in self.members if not m.closed):
                    break
                need = len(self.latencies.get(step, ())) + 1  # duplicates somewhere: wait for more
                polls = 1
            await asyncio.sleep(0.02)
        want = sum(expected.get(m.room, 0) for m in self.members)
        got = sum(min(m.counts.get(step, 0), expected.get(m.room, 0)) for m in self.members)
        extra = sum(max(0, m.counts.get(step, 0) - expected.get(m.room, 0)) for m in self.members)
        return {
            "expected": want,
            "received": got,
            "extra": extra,
            "latencies": self.latencies.get(step, array("d")).tobytes(),
            "by_message": {n: lat.tobytes() for n, lat in self.by_message.items()},
            "first_recv": self.first_recv.get(step),
            "last_recv": self.last_recv.get(step),
            "out_of_order": self.out_of_order,
            "late": self.late,
            "errors": self.errors,
            "closed": sum(m.closed for m in self.members),
        }

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*(self._close(m) for m in self.members), return_exceptions=True)

    # Sockets ---------------------------------------------------------------

    async def _open_member(
        self, index: int, room: str, senders: dict[int, int], sem: asyncio.Semaphore
    ) -> Member | str:
        """Open a socket and start reading it at once: a Socket.IO server closes a socket whose
        pings go unanswered (25 + 20 s), and connecting a crowd can take longer than that."""
        # Senders need a full client (they send and wait for acks); listeners may be lean.
        result = await self._open(room, sem, lean=self.spec.lean and index not in senders)
        if isinstance(result, str):
            return result
        member = Member(result, room, senders.get(index))
        self.members.append(member)
        self.by_room.setdefault(room, []).append(member)
        if member.sender is not None:
            self.senders.append(member)
        if isinstance(result, LeanSocket):
            result.on_text = functools.partial(self._heard, member)
            result.on_close = functools.partial(setattr, member, "closed", True)
        else:
            self.readers.append(asyncio.ensure_future(self._read(member)))
        return member

    async def _open(self, room: str, sem: asyncio.Semaphore, lean: bool = False) -> ClientConnection | LeanSocket | str:
        """A live socket, or why not; a refused handshake is retried as a real client would."""
        reason = ""
        for attempt in range(self.spec.attempts):
            if attempt:
                self.retries += 1
                await asyncio.sleep(0.2 * attempt)
            async with sem:
                if self.deadline is not None and time.time() > self.deadline:
                    return "deadline"
                result = await self._open_once(room, lean)
            if not isinstance(result, str):
                return result
            reason = result
        return reason

    async def _open_once(self, room: str, lean: bool = False) -> ClientConnection | LeanSocket | str:
        path = SOCKETIO_PATH.format(room=room) if self.spec.dialect == "socketio" else f"/ws/rooms/{room}/"
        if lean and self.spec.dialect == "choir":
            try:
                sock, first = await open_lean(
                    "127.0.0.1", self.spec.port, path, source=self.spec.source, timeout=self.spec.open_timeout
                )
            except Exception as exc:
                return type(exc).__name__
            if '"hello"' not in first:
                await sock.close()
                return f"no hello: {first[:80]}"
            return sock
        url = f"ws://127.0.0.1:{self.spec.port}{path}"
        # The tutorial stack refuses clients without an Origin; the others need none.
        origin = f"http://127.0.0.1:{self.spec.port}" if self.spec.dialect == "channels" else None
        extra: dict[str, Any] = {}
        if self.spec.source is not None:
            extra["local_addr"] = (self.spec.source, 0)
        if self.spec.cookie is not None:
            extra["additional_headers"] = {"Cookie": self.spec.cookie}
        try:
            ws = await connect(
                url,
                origin=origin,  # type: ignore[arg-type]
                **extra,
                compression=None,
                ping_interval=None,
                open_timeout=self.spec.open_timeout,
                close_timeout=1,
                max_queue=None,
            )
        except Exception as exc:
            return type(exc).__name__
        if self.spec.dialect == "choir":
            # A Choir socket is live once `hello` arrives.
            try:
                first = await asyncio.wait_for(ws.recv(), self.spec.open_timeout)
            except Exception as exc:
                await ws.close()
                return f"no hello: {type(exc).__name__}"
            if '"hello"' not in first:
                await ws.close()
                return f"no hello: {first[:80]}"
        elif self.spec.dialect == "socketio":
            try:
                opened = await asyncio.wait_for(ws.recv(), self.spec.open_timeout)
                if not opened.startswith("0"):
                    raise ValueError(opened[:80])
                await ws.send("40")
                joined = await asyncio.wait_for(ws.recv(), self.spec.open_timeout)
                if not joined.startswith("40"):
                    raise ValueError(joined[:80])
            except Exception as exc:
                await ws.close()
                return f"no socket.io connect: {exc!r}"[:120]
        return ws

    async def _close(self, member: Member) -> None:
        try:
            await asyncio.wait_for(member.ws.close(), 2)
        except Exception:
            pass

    async def _read(self, member: Member) -> None:
        try:
            async for text in member.ws:  # type: ignore[union-attr]
                if text == "2":  # Engine.IO ping
                    await member.ws.send("3")  # type: ignore[union-attr]
                    continue
                self._heard(member, text)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        finally:
            member.closed = True

    def _heard(self, member: Member, text: str) -> None:
        """Count one frame a member received, and when it was sent."""
        now = time.time()
        start = text.find(MARK)
        if start < 0:
            if text.startswith('{"type":"error"'):
                self.errors += 1
                if member.waiting is not None and not member.waiting[1].done():
                    member.waiting[1].set_result(None)
            return
        end = text.find(MARK, start + 2)
        step_s, sender_s, n_s, sent_s = text[start + 2 : end].split(",")
        step, sender, n = int(step_s), int(sender_s), int(n_s)
        if step != self.step:
            self.late += 1
            return
        member.counts[step] = member.counts.get(step, 0) + 1
        if n <= member.last_n.get(sender, -1):
            self.out_of_order += 1
        member.last_n[sender] = n
        self.latencies[step].append(now - float(sent_s))
        if self.spec.per_message:
            self.by_message.setdefault(n, array("d")).append(now - float(sent_s))
        if step not in self.first_recv:
            self.first_recv[step] = now
        self.last_recv[step] = now
        waiting = member.waiting
        if waiting is not None and sender == member.sender and waiting[0] == n and not waiting[1].done():
            waiting[1].set_result(now)

    # Senders ---------------------------------------------------------------

    async def _send_fixed(
        self, member: Member, step: int, rate: float, duration: float, start_at: float, stagger: int
    ) -> int:
        count = int(rate * duration)
        assert member.sender is not None
        # Senders of different rooms start at different phases of the period,
        # so 100 senders at 5/s are 500 evenly spread messages a second.
        offset = ((member.sender % stagger) / stagger) / rate if stagger > 1 else 0.0
        give_up = start_at + duration + 10
        sent = 0
        for n in range(count):
            delay = start_at + offset + n / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if member.closed or time.time() > give_up:
                break
            try:
                await member.ws.send(
                    encode(self.spec.dialect, payload(step, member.sender, n, self.pad), f"{member.sender}-{step}-{n}")
                )
            except ConnectionClosed:
                break
            sent += 1
        return sent

    async def _send_acked(
        self, member: Member, step: int, rate: float, duration: float, start_at: float, stagger: int
    ) -> int:
        assert member.sender is not None
        loop = asyncio.get_running_loop()
        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        stop_at = start_at + duration
        sent = 0
        n = 0
        while time.time() < stop_at and not member.closed:
            future: asyncio.Future[float | None] = loop.create_future()
            member.waiting = (n, future)
            try:
                await member.ws.send(
                    encode(self.spec.dialect, payload(step, member.sender, n, self.pad), f"{member.sender}-{step}-{n}")
                )
                sent += 1
                await asyncio.wait_for(future, 10)
            except (TimeoutError, ConnectionClosed):
                break
            n += 1
        member.waiting = None
        return sent


def main(conn: Connection, spec: Spec) -> None:
    """Entry point of a client process."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(Worker(conn, spec).run())
