"""What the fault tests need: a private redis-server, and clients that count.

A `Chorister` is a real `websockets` client that behaves as the protocol page
asks of a careful client: it sends with client_ids, waits for each
acknowledgement, retries with the same client_id after `unavailable`,
`rate_limited` or a lost connection, and reconnects with `?after=<last seq>`.
Meanwhile it records every `message` frame it receives, so a test can prove
that each client saw every seq exactly once and in order.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import websockets
from channels.db import database_sync_to_async

from choir.models import Message, Room
from tests.support import OUTPUT, free_port, need


class PrivateRedis:
    """A redis-server of the test's own, on its own port, that it may stop and start."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        need(self.binary is not None, "redis-server is not installed")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.command("PING") == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def command(self, *args: str) -> Any:
        """One command in RESP over a plain socket (no client library state to reset)."""
        payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(payload.encode())
                reader = sock.makefile("rb")
                return _read_resp(reader)
        except OSError:
            return None


def _read_resp(reader: Any) -> Any:
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b"-"):
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)[:-2]
        return data.decode()
    if kind == b"*":
        return [_read_resp(reader) for _ in range(int(rest))]
    raise ValueError(line)


class Chorister:
    """One careful client: sends `to_send` messages, resumes, and counts."""

    def __init__(
        self,
        name: str,
        url_for: Callable[[int], str],
        *,
        cookie: str | None = None,
        to_send: int = 0,
        pace: float = 0.05,
        ack_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.url_for = url_for  # after -> URL, so a test may move a client elsewhere
        self.headers = [("Cookie", cookie)] if cookie else []
        self.to_send = to_send
        self.pace = pace
        self.ack_timeout = ack_timeout
        # What it sent and what it was told.
        self.sent: dict[str, str] = {}  # client_id -> body, each distinct message once
        self.attempts: Counter[str] = Counter()
        self.acked: dict[str, int] = {}  # client_id -> seq
        self.pending: dict[str, str] = {}
        self.errors: Counter[str] = Counter()
        # What it received.
        self.last = 0  # highest seq seen in order
        self.received: list[int] = []  # seq of every counted `message` frame, in arrival order
        self.doubled = 0
        self.gaps: list[tuple[int, int]] = []
        self.retry_echoes = 0
        # Its connections.
        self.connects = 0
        self.closes: list[int | None] = []
        self.local_port: int | None = None
        self.ws: Any = None
        self.synced = asyncio.Event()
        self._answers: dict[str, asyncio.Event] = {}
        self._retry_after: dict[str, float] = {}
        self._stopping = False
        self._hushed = False
        self._tasks: list[asyncio.Task] = []

    # Running ------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._connection_loop())]
        if self.to_send:
            self._tasks.append(asyncio.ensure_future(self._sing()))

    def sing(self, count: int, pace: float = 0.05) -> None:
        """Start sending `count` messages now (for a client started as a listener)."""
        self.to_send, self.pace = count, pace
        self._tasks.append(asyncio.ensure_future(self._sing()))

    def hush(self) -> None:
        """Stop singing after the message in flight (which must still land)."""
        self._hushed = True

    @property
    def done_sending(self) -> bool:
        return len(self.acked) == (len(self.sent) if self._hushed else self.to_send)

    async def stop(self) -> None:
        self._stopping = True
        if self.ws is not None:
            await self.ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection_loop(self) -> None:
        while not self._stopping:
            try:
                async with websockets.connect(
                    self.url_for(self.last), additional_headers=self.headers, open_timeout=5, max_size=2**20
                ) as ws:
                    self.ws = ws
                    self.connects += 1
                    self.local_port = ws.local_address[1]
                    try:
                        async for raw in ws:
                            self._handle(json.loads(raw))
                    finally:
                        self.ws = None
                        self.synced.clear()
                        self.closes.append(ws.close_code)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed):
                pass
            if not self._stopping:
                await asyncio.sleep(0.1 + random.random() * 0.2)

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "message":
            self._on_message(frame)
        elif kind == "synced":
            self.synced.set()
        elif kind == "error":
            self.errors[frame["code"]] += 1
            ref = frame.get("ref")
            if ref in self.pending and frame["code"] in ("unavailable", "rate_limited"):
                self._retry_after[ref] = float(frame.get("retry_after") or 0.5)
                self._answered(ref)
        elif kind == "closing":
            pass

    def _on_message(self, frame: dict[str, Any]) -> None:
        seq, cid = frame["seq"], frame.get("client_id")
        if cid in self.sent and self.attempts[cid] > 1 and cid in self.acked and self.acked[cid] == seq:
            # The answer to a retry of a message already seen: the protocol's
            # idempotent ack, not a second delivery.
            self.retry_echoes += 1
            self._answered(cid)
            return
        self.received.append(seq)
        if seq == self.last + 1:
            self.last = seq
        elif seq <= self.last:
            self.doubled += 1
        else:
            self.gaps.append((self.last + 1, seq - 1))
            self.last = seq
        if cid in self.pending:
            self.acked[cid] = seq
            del self.pending[cid]
            self._answered(cid)

    def _answered(self, cid: str) -> None:
        event = self._answers.get(cid)
        if event is not None:
            event.set()

    async def _sing(self) -> None:
        for i in range(self.to_send):
            if self._hushed:
                return
            cid = f"{self.name}-{i}"
            body = f"{self.name} sings note {i}"
            self.sent[cid] = body
            self.pending[cid] = body
            while cid in self.pending:
                await self.synced.wait()
                if cid not in self.pending:  # the replay after a reconnect showed it was stored
                    break
                ws = self.ws
                if ws is None:
                    continue
                event = self._answers[cid] = asyncio.Event()
                self.attempts[cid] += 1
                try:
                    await ws.send(json.dumps({"type": "say", "body": body, "client_id": cid}))
                    await asyncio.wait_for(event.wait(), self.ack_timeout)
                except (websockets.ConnectionClosed, TimeoutError):
                    await asyncio.sleep(0.05)
                wait = self._retry_after.pop(cid, 0.0)
                if wait and cid in self.pending:
                    await asyncio.sleep(min(wait, 2.0))
            await asyncio.sleep(self.pace)

    # Results ---------------------------------------------------------------

    def counts(self, total: int) -> dict[str, int]:
        unique = set(self.received)
        return {
            "sent": len(self.sent),
            "attempts": sum(self.attempts.values()),
            "acknowledged": len(self.acked),
            "received": len(self.received),
            "lost": len(set(range(1, total + 1)) - unique),
            "doubled": self.doubled,
            "out_of_order": len(self.gaps),
            "retry_echoes": self.retry_echoes,
            "connects": self.connects,
        }


async def converge(choir: list[Chorister], total_of: Callable[[], Any], timeout: float = 60.0) -> int:
    """Wait until every sender is acknowledged and every client has seen the room's last seq."""
    deadline = time.monotonic() + timeout
    while True:
        total = await total_of()
        if all(c.done_sending for c in choir) and all(c.last >= total for c in choir):
            return total
        if time.monotonic() > deadline:
            state = {c.name: (len(c.acked), c.to_send, c.last, total) for c in choir}
            raise AssertionError(f"no convergence within {timeout}s: {state}")
        await asyncio.sleep(0.2)


def report(name: str, choir: list[Chorister], total: int, **extra: Any) -> dict[str, Any]:
    """Sum the counts, write them to test-output/faults-<name>.json, and return them."""
    per_client = {c.name: c.counts(total) for c in choir}
    keys = ["sent", "attempts", "acknowledged", "received", "lost", "doubled", "out_of_order", "retry_echoes", "connects"]
    summary = {key: sum(counts[key] for counts in per_client.values()) for key in keys}
    summary["refused"] = dict(sum((c.errors for c in choir), Counter()))
    summary["expected_deliveries"] = total * len(choir)
    summary["stored"] = total
    result = {"scenario": name, "total": summary, "clients": per_client, **extra}
    OUTPUT.mkdir(exist_ok=True)
    Path(OUTPUT / f"faults-{name}.json").write_text(json.dumps(result, indent=2))
    print(f"\nfaults {name}: {json.dumps(summary)}")
    return result


async def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.1)


async def start_singing(choir: list[Chorister], before_fault: int):
    """Start every client; return once all are synced and `before_fault` messages are stored.

    Returns the room-total probe the fault tests poll afterwards."""
    for c in choir:
        c.start()
    total = room_total()

    async def everyone_connected() -> bool:
        return all(c.synced.is_set() for c in choir)

    async def some_sung() -> bool:
        return await total() >= before_fault

    await wait_for(everyone_connected, 15, "every client connected")
    await wait_for(some_sung, 30, f"{before_fault} messages before the fault")
    return total


def room_total(slug: str = "lobby"):
    async def total() -> int:
        return await database_sync_to_async(lambda: Room.objects.get(slug=slug).last_seq)()

    return total


def stored_rows(slug: str = "lobby") -> list[tuple[int, str]]:
    return list(Message.objects.filter(room__slug=slug).order_by("seq").values_list("seq", "client_id"))


async def assert_nothing_lost_or_doubled(choir: list[Chorister], total: int) -> None:
    rows = await database_sync_to_async(stored_rows)()
    seqs = [seq for seq, _ in rows]
    assert seqs == list(range(1, total + 1)), "stored seqs are not gap-free"
    client_ids = [cid for _, cid in rows]
    assert len(client_ids) == len(set(client_ids)), "a client_id was stored twice"
    sent = {cid for c in choir for cid in c.sent}
    assert set(client_ids) == sent, "stored messages differ from the ones sent"
    for c in choir:
        assert set(c.acked) == set(c.sent), f"{c.name}: not every message was acknowledged"
        assert c.received == list(range(1, total + 1)), f"{c.name}: not every seq exactly once, in order"
