"""One room, followed over a socket that comes back by itself.

The client keeps the last seq it has handed out. Every (re)connect asks for
`?after=` that seq (and `&rev=` once the server has said it counts changes),
so the server replays exactly what was missed; a `truncated` range, or any
gap in live traffic, is read from the history API before anything later is
handed out. Messages therefore come out of the iterator in seq order, each
once, across reconnects and server restarts.

Posts carry a `client_id` (one is made up when the caller gives none) and stay
pending until the server's `message` frame for that id comes back: a post
whose connection dropped is sent again on the next connection, and the server
stores it once (PROTOCOL.md, guarantee 3). The server recognises a retry by
its author, so a token or a session is what makes retries across reconnects
safe; a bare guest is a new guest on each connection.

One class, and long because of it: the connection loop, the ordering and
the retries all turn on the same state (the last seq, the pending posts).
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from choir.client.backoff import Backoff
from choir.client.errors import FINAL_CLOSE_CODES, ChoirError, Closed, Refused
from choir.client.urls import history_url, socket_url

log = logging.getLogger("choir.client")

Frame = dict[str, Any]

# Refusals worth sending again with the same client_id; the rest are final.
RETRYABLE = {"rate_limited", "unavailable"}
HISTORY_PAGE = 200


@dataclass
class _Pending:
    frame: Frame
    future: asyncio.Future[Frame]
    attempts: int = 0
    resend: asyncio.TimerHandle | None = field(default=None, repr=False)


class RoomClient:
    """A follower of one room that posts, reconnects and resumes by itself.

    `url` is the room's socket URL (`ws://host/ws/rooms/<slug>/`) or its page
    URL. `token` is sent as `Authorization: Bearer`, or as `?token=` with
    `token_in_query=True`; without one the client is a guest (`name` asks for
    a guest name). `after` starts from a known seq (0: the whole history);
    by default the client starts at the room's latest message. `headers` adds
    handshake headers (a session `Cookie`, say). `on_frame` sees every frame,
    including those the iterator leaves out (presence, typing, edits...).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_in_query: bool = False,
        name: str | None = None,
        after: int | None = None,
        headers: dict[str, str] | None = None,
        backoff: Backoff | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        open_timeout: float = 10.0,
    ) -> None:
        self.url = socket_url(url)
        # What the URL's own query says (?after=, ?name=, ?token=) counts as if passed here.
        given = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.url).query))
        self.token = token or given.get("token")
        self.token_in_query = token_in_query or (token is None and "token" in given)
        self.name = name or given.get("name")
        self.last_seq: int | None = after if after is not None else int(given["after"]) if "after" in given else None
        self.rev: int | None = None
        self.hello: Frame | None = None
        self.headers = dict(headers or {})
        self.backoff = backoff or Backoff()
        self.on_frame = on_frame
        self.open_timeout = open_timeout
        self.connects = 0
        self._ws: ClientConnection | None = None
        self._messages: asyncio.Queue[Frame | BaseException] = asyncio.Queue()
        self._pending: dict[str, _Pending] = {}
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._resends: set[asyncio.Task[None]] = set()

    # Lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> RoomClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect, and return once the server has said hello (or raise why it never will)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"choir-client {self.url}")
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._failure is not None:
            raise self._failure
        if self._task.done() and not self.connected:
            self._task.result()  # raises whatever stopped it
            raise ChoirError("the client stopped before it connected")

    async def close(self) -> None:
        """Close the socket and end the iterator; posts still pending fail with ChoirError."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._finish(ChoirError("the client was closed"))

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    # Posting ------------------------------------------------------------------

    async def say(self, body: str, *, client_id: str | None = None, reply_to: int | None = None, timeout: float | None = 60.0) -> Frame:
        """Post `body`; return the server's `message` frame for it (the acknowledgement, with its seq).

        Retried with the same client_id across reconnects, `unavailable` and
        `rate_limited` until acknowledged or `timeout` runs out (then
        TimeoutError: the message may or may not be stored; `say` again with
        the same client_id to find out without storing it twice). Other
        refusals raise Refused.
        """
        client_id = client_id or uuid.uuid4().hex
        frame: Frame = {"type": "say", "body": body, "client_id": client_id}
        if reply_to is not None:
            frame["reply_to"] = reply_to
        if self._failure is not None:
            raise self._failure
        pending = self._pending.get(client_id)
        if pending is None:
            pending = self._pending[client_id] = _Pending(frame, asyncio.get_running_loop().create_future())
            await self._send_pending(pending)
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout)
        finally:
            if self._pending.get(client_id) is pending:
                self._drop_pending(client_id)

    async def send(self, frame: Frame) -> bool:
        """Send any other frame (typing, edit, react, read...) if connected; False if not (it is not queued)."""
        if self._ws is None or not self.connected:
            return False
        try:
            await self._ws.send(json.dumps(frame))
        except ConnectionClosed:
            return False
        return True

    # Following ------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self

    async def __anext__(self) -> Frame:
        item = await self._messages.get()
        if isinstance(item, BaseException):
            self._messages.put_nowait(item)  # every later call ends the same way
            if isinstance(item, StopAsyncIteration) or self._closing:
                raise StopAsyncIteration
            raise item
        return item

    # The connection loop -----------------------------------------------------------

    def connect_url(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in {"after", "rev", "name", "token"}]
        if self.last_seq is not None:
            query.append(("after", str(self.last_seq)))
            if self.rev is not None:
                query.append(("rev", str(self.rev)))
        if self.name:
            query.append(("name", self.name))
        if self.token and self.token_in_query:
            query.append(("token", self.token))
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    def _handshake_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.token and not self.token_in_query:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def _run(self) -> None:
        try:
            await self._connect_and_reconnect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a frame beyond the contract: end loudly, never hang the iterator
            log.exception("the client stopped")
            self._fail(exc)
            raise

    async def _connect_and_reconnect(self) -> None:
        attempt = 0
        while not self._closing:
            code: int | None = None
            reason = ""
            try:
                async with connect(
                    self.connect_url(), additional_headers=self._handshake_headers(), open_timeout=self.open_timeout
                ) as ws:
                    self._ws = ws
                    try:
                        await self._read(ws)
                    finally:
                        code, reason = ws.close_code, ws.close_reason or ""
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403, 404):  # refused before accept: reconnecting cannot help
                    self._fail(Closed(4000 + status, f"handshake refused with HTTP {status}"))
                    return
                log.warning("handshake refused with HTTP %s", status)
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as exc:
                log.debug("connection failed: %r", exc)
            finally:
                self._ws = None
                if self._ready.is_set():
                    attempt = 0  # this connection got as far as hello: start the backoff over
                self._ready.clear()
            if self._closing:
                return
            if code in FINAL_CLOSE_CODES:
                self._fail(Closed(code, reason))
                return
            delay = self.backoff.delay(attempt)
            attempt += 1
            log.warning("disconnected (%s); reconnecting in %.1fs", code or "no connection", delay)
            await asyncio.sleep(delay)

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                frame = json.loads(raw)
            except (TypeError, ValueError):
                continue
            if not isinstance(frame, dict):
                continue
            await self._handle(ws, frame)
            if self.on_frame is not None:
                self.on_frame(frame)

    async def _handle(self, ws: ClientConnection, frame: Frame) -> None:
        kind = frame.get("type")
        if "rev" in frame and isinstance(frame["rev"], int) and kind != "hello" and self.rev is not None:
            self.rev = max(self.rev, frame["rev"])
        if kind == "hello":
            self.hello = frame
            self.connects += 1
            if self.last_seq is None:
                self.last_seq = int(frame.get("seq", 0))
            if "rev" in frame and self.rev is None:  # the server counts changes: resume them from here
                self.rev = int(frame["rev"])
            self._ready.set()
            for pending in list(self._pending.values()):
                await self._send_pending(pending)
        elif kind == "message":
            self._acknowledge(frame)
            await self._deliver(frame)
        elif kind == "truncated" and "from" in frame:
            await self._fill(int(frame["to"]))
        elif kind == "error":
            self._refused(frame)
        # Every other type (synced, presence, typing, edits, types added later) is
        # only for on_frame: a client ignores what it does not know.

    # Delivery in order, once ----------------------------------------------------------

    async def _deliver(self, frame: Frame) -> None:
        seq = int(frame["seq"])
        if self.last_seq is not None and seq <= self.last_seq:
            return  # already handed out (a replay overlap or an idempotent retry's answer)
        if self.last_seq is not None and seq > self.last_seq + 1:
            await self._fill(seq - 1)
        if self.last_seq is None or seq > self.last_seq:
            self.last_seq = seq
            self._messages.put_nowait(frame)

    async def _fill(self, upto: int) -> None:
        """Read (last_seq, upto] from the history API and hand it out, before anything later."""
        base = history_url(self.url)
        if base is None or self.last_seq is None:
            log.warning("cannot read the history behind %s; messages up to %d are skipped", self.url, upto)
            self.last_seq = max(self.last_seq or 0, upto)
            return
        while self.last_seq < upto:
            limit = min(HISTORY_PAGE, upto - self.last_seq)
            try:
                page = await asyncio.to_thread(self._history, base, self.last_seq, limit)
            except OSError as exc:
                log.warning("history unavailable (%s); messages %d-%d are skipped", exc, self.last_seq + 1, upto)
                self.last_seq = upto
                return
            messages = [m for m in page.get("messages", []) if self.last_seq < int(m["seq"]) <= upto]
            for message in messages:
                message.setdefault("type", "message")
                self.last_seq = int(message["seq"])
                self._messages.put_nowait(message)
            if not messages or not page.get("has_more", False) and self.last_seq < upto:
                self.last_seq = upto  # deleted or pruned: nothing more to read
                return

    def _history(self, base: str, after: int, limit: int) -> Frame:
        request = urllib.request.Request(f"{base}?after={after}&limit={limit}", headers=self._handshake_headers())
        with urllib.request.urlopen(request, timeout=self.open_timeout) as response:
            return json.load(response)

    # Acknowledgements and retries -----------------------------------------------------

    def _acknowledge(self, frame: Frame) -> None:
        pending = self._pending.get(frame.get("client_id") or "")
        if pending is None or pending.future.done():
            return
        me = (self.hello or {}).get("you", {}).get("name")
        if me is not None and frame.get("author") != me:
            return  # someone else's client_id that happens to match
        pending.future.set_result(frame)

    def _refused(self, frame: Frame) -> None:
        pending = self._pending.get(frame.get("ref") or "")
        if pending is None or pending.future.done():
            if frame.get("code"):
                log.info("refused: %s %s", frame.get("code"), frame.get("detail", ""))
            return
        code = str(frame.get("code", ""))
        if code in RETRYABLE:
            retry_after = frame.get("retry_after")
            delay = float(retry_after) if isinstance(retry_after, (int, float)) else self.backoff.delay(pending.attempts)
            pending.attempts += 1
            pending.resend = asyncio.get_running_loop().call_later(delay, self._resend_later, pending)
            return
        pending.future.set_exception(Refused(code, str(frame.get("detail", "")), frame.get("retry_after")))

    async def _send_pending(self, pending: _Pending) -> None:
        client_id = pending.frame["client_id"]
        ws = self._ws
        if pending.future.done() or self._pending.get(client_id) is not pending or ws is None or not self.connected:
            return  # sent again after the next hello
        try:
            await ws.send(json.dumps(pending.frame))
        except ConnectionClosed:
            pass

    def _resend_later(self, pending: _Pending) -> None:
        task = asyncio.ensure_future(self._send_pending(pending))
        self._resends.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._resends.discard)

    def _drop_pending(self, client_id: str) -> None:
        pending = self._pending.pop(client_id, None)
        if pending is not None and pending.resend is not None:
            pending.resend.cancel()

    # Endings -------------------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        self._failure = error
        self._finish(error)

    def _finish(self, error: BaseException) -> None:
        for client_id, pending in list(self._pending.items()):
            if not pending.future.done():
                pending.future.set_exception(error)
                pending.future.exception()  # retrieved: nobody may be awaiting it any more
            self._drop_pending(client_id)
        self._messages.put_nowait(StopAsyncIteration() if self._closing else error)
