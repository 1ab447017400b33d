"""The room socket: parse a frame, call a service, send the answer.

Deliveries do not pass through this class: the process hub (choir/fanout)
writes broadcast frames straight to each socket's seat, so a consumer has no
channel-layer channel of its own. Who is entering which room is read in
choir/entry.py; long because the handshake (who, which room, resume of
messages and changes) and one small handler per client frame type belong to
the one socket class.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from choir import entry, logs, metrics, presence, protocol, services, transport
from choir.access import Access, Singer, Standing, access_for, singer_for
from choir.conf import settings
from choir.entry import NO_ACCESS
from choir.fanout import Seat, current_hub
from choir.protocol import Close, Code, Refusal
from choir.runtime import current_writer
from choir.selectors import Replay, replay
from choir.transport import Outgoing, Wire
from choir.writer import settled

log = logging.getLogger("choir.socket")

MAX_SAYS_IN_FLIGHT = 32  # posts of one socket queued or being stored at once


class RoomConsumer(AsyncWebsocketConsumer):
    conn_id: str
    user_id: int | None = None
    is_staff: bool = False
    name: str = ""
    client_ip: str = ""
    token_id: int | None = None  # the API token this socket was opened with; its revocation closes it
    read_only: bool = False
    wire: Wire | None = None
    seat: Seat | None = None
    singer: Singer
    access: Access

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Like AsyncConsumer.__call__, minus the per-socket channel: the hub
        # is this process's only channel-layer member.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        # The fast path's handle on this socket (choir/transport.py), or None:
        # then every frame goes through plain ASGI sends.
        self.wire = scope.get("choir.wire")
        if self.wire is not None:
            self.wire.fell_behind = self._fell_behind
        try:
            # One source of events, so no need for await_many_dispatch's task per socket.
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Stock dispatch hops to a thread per frame to close stale database
        # connections; every database call here already does that itself.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool | int = False) -> None:
        if text_data is not None and self.wire is not None and not close:
            # Straight onto the socket, like the hub's deliveries (choir/transport.py);
            # only writable once accepted, and dropped once closing, as Daphne would.
            Outgoing(text_data).write(self.wire)
            return
        await super().send(text_data, bytes_data, close)

    # Connect -----------------------------------------------------------------

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self.accepted = False
        try:
            await self._connect()
        except DatabaseError:
            # The database is away: say so with a code that means "try again
            # later", rather than failing the handshake with no reason at all.
            logs.socket_fault(self)
            if not self.accepted:
                await self.accept()
            if self.seat is not None:
                await current_hub().leave(self.seat)
                self.seat = None
            await self.shut(Close.TRY_AGAIN, "storage is unavailable; reconnect in a few seconds")

    async def _connect(self) -> None:
        self.conn_id = secrets.token_hex(8)
        logs.bind_socket(self)
        self.opened = time.monotonic()
        self.closing = False
        self.strikes = 0
        self.last_typing = 0.0
        self.saying: set[asyncio.Task] = set()
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        requested_name = (query.get("name") or [None])[0]
        slug = self.scope["url_route"]["kwargs"]["slug"]
        hub = current_hub()
        self.client_ip = (self.scope.get("client") or ["?"])[0] or "?"
        # Every handshake costs a token, refused ones too: probing or
        # reconnecting in a tight loop is held to a rate per address.
        handshake_wait = hub.handshake(self.client_ip)
        known = None
        marker: int | None = None
        token_error = None
        raw_token = self.scope.get("choir.token")
        cookieless = settings.SESSION_COOKIE_NAME not in self.scope.get("cookies", {})
        if handshake_wait or hub.rooms.missing(slug):
            # Answered without touching the database.
            room, self.singer = None, singer_for(None, None, requested_name)
            self.access = NO_ACCESS
        else:
            if raw_token is None and cookieless:
                # A cookie-less guest has no standing to look up: with the room
                # from the hub, the rules need nothing from the database.
                known = await hub.open_room(slug)
            if raw_token is not None:
                room, self.singer, self.access, marker, grant, token_error = await database_sync_to_async(
                    entry.enter_with_token
                )(slug, raw_token)
                if grant is not None:
                    self.token_id, self.read_only = grant.token_id, grant.read_only
            elif known is not None:
                room = known
                self.singer = singer_for(None, None, requested_name)
                self.access = access_for(room, self.singer, Standing())
            else:
                room, self.singer, self.access, marker = await database_sync_to_async(entry.enter)(
                    slug, self.scope.get("user"), self.scope.get("session"), requested_name
                )
                if room is None:
                    hub.rooms.note_missing(slug)
        self.user_id = self.singer.user_id
        self.is_staff = self.access.conducts_everywhere  # the hub keeps these in a room turned private
        self.name = self.singer.name
        self.person = f"u:{self.user_id}" if self.user_id is not None else f"a:{self.client_ip}"

        # Accept first so that every refusal is a close code a browser can read.
        await self.accept()
        self.accepted = True
        if token_error is not None:
            return await self.shut(Close.UNAUTHORIZED, token_error)
        if handshake_wait:
            return await self.shut(
                Close.TRY_AGAIN, f"too many connection attempts from your address; retry in {handshake_wait:.1f} s"
            )
        if room is None or not (self.access.can_view or self.access.banned):
            # A private room is missing to a non-member, so nobody can probe for one.
            return await self.shut(Close.NOT_FOUND, "no such room")
        if self.access.banned:
            return await self.shut(Close.FORBIDDEN, "you are banned from this room")
        if not room.is_open:
            return await self.shut(Close.ROOM_CLOSED, "this room is closed")
        over = hub.admit(self)
        if over:
            return await self.shut(Close.FLOODING, over)

        after: int | None = None
        since_rev: int | None = None
        after_error: Refusal | None = None
        try:
            after = protocol.parse_after((query.get("after") or [None])[0])
            since_rev = protocol.parse_rev((query.get("rev") or [None])[0])
        except ValueError as exc:
            after_error = Refusal(Code.INVALID, f"ignored ?after= and ?rev=: {exc}")
            after = since_rev = None

        seat = self.seat = await hub.join(room, self)
        if after is None:
            # Everything stored after this seq reaches the socket through the
            # hub (broadcast or gap fill), so no database read is needed.
            owed = Replay(seat.feed.last_seq, seat.feed.changes.last_rev, [], None, [], None)
        else:
            owed = await database_sync_to_async(replay)(room, after, settings.CHOIR_REPLAY_LIMIT, since_rev)
        latest, latest_rev = owed.seq, owed.rev
        # Changes up to latest_rev are in the replay (or the client had
        # them); the hub writes this socket only later ones (see go_live).
        seat.rev = latest_rev
        online, online_count = await hub.online(seat.feed)
        await self.send(
            text_data=protocol.hello_frame(
                room={"slug": room.slug, "title": room.title, "topic": room.topic, "mode": room.mode},
                you={
                    "name": self.name,
                    "guest": self.singer.is_guest,
                    "can_post": self.access.can_post,
                    "why_not": self.access.why_not_post or None,
                    "conductor": self.access.is_conductor,
                    "read_seq": marker,
                },
                seq=latest,
                rev=latest_rev,
                online=online,
                online_count=online_count,
            )
        )
        if after_error is not None:
            await self.send(text_data=protocol.error_frame(after_error))
        seat.cursor = latest if after is None else min(after, latest)
        if after is not None:
            metrics.REPLAYS.inc()
            if owed.skipped is not None:
                await self.send(text_data=protocol.truncated_frame(*owed.skipped))
            for frame in owed.messages:
                await self.send(text_data=protocol.encode(frame))
            metrics.REPLAYED_MESSAGES.inc(len(owed.messages))
            seat.cursor = max(seat.cursor, latest)
            if owed.skipped_revs is not None:
                await self.send(text_data=protocol.truncated_revs_frame(*owed.skipped_revs))
            for frame in owed.changes:
                await self.send(text_data=protocol.encode(frame))
            await self.send(text_data=protocol.synced_frame(latest, latest_rev))
        await hub.go_live(seat)
        logs.socket_event(self, "connect", after=after)

    async def shut(self, code: int, reason: str) -> None:
        """Say why, then close: the one way this socket is ever closed by us."""
        if self.closing:
            return
        self.closing = True
        metrics.REFUSALS.labels(f"close_{code}").inc()
        logs.closing(self, code, reason)
        farewell = protocol.closing_frame(code, reason)
        if self.wire is not None:
            transport.close(self.wire, code, farewell)
            return
        await self.send(text_data=farewell)
        await transport.asgi_close(self.base_send, code)

    def _fell_behind(self) -> None:
        """The transport's call when more than CHOIR_MAX_QUEUED_BYTES waits for this socket."""
        if self.closing or self.wire is None:
            return
        self.closing = True
        code, reason = Close.SLOW_READER, "you fell too far behind in reading; reconnect with ?after="
        metrics.REFUSALS.labels(f"close_{code}").inc()
        logs.closing(self, code, reason)
        transport.close(self.wire, code, protocol.closing_frame(code, reason))

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self.wire is not None:
            self.wire.fell_behind = None  # no cycle through the wire outlives the socket
        if self.seat is not None:
            await current_hub().leave(self.seat)
            self.seat = None
        logs.socket_event(
            self, "disconnect", code=message.get("code"), seconds=round(time.monotonic() - getattr(self, "opened", time.monotonic()), 3)
        )
        raise StopConsumer()

    # Frames ---------------------------------------------------------------------

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if self.seat is None or self.closing:
            return
        try:
            try:
                command = protocol.parse_frame(message.get("text"), message.get("bytes"))
            except Refusal as refusal:
                await self._throttle(refusal.ref)  # junk costs a token too, or it could flood unchecked
                raise
            if isinstance(command, protocol.Typing):
                # Typing costs a token like any frame, but a refused one is
                # dropped without an answer: it was only a hint.
                try:
                    await self._throttle(None)
                except Refusal:
                    if self.strikes >= settings.CHOIR_FLOOD_STRIKES:
                        await self.shut(Close.FLOODING, "closed for flooding")
                    return
            else:
                await self._throttle(getattr(command, "client_id", None))
            handler = self.handlers[type(command)]
            await handler(self, command)
        except Refusal as refusal:
            if refusal.code == Code.RATE_LIMITED and self.strikes >= settings.CHOIR_FLOOD_STRIKES:
                await self.shut(Close.FLOODING, "closed for flooding")
                return
            await self.refuse(refusal)
        except Exception:
            await self.fault()

    async def refuse(self, refusal: Refusal) -> None:
        metrics.REFUSALS.labels(refusal.code).inc()
        logs.refusal(self, refusal.code, refusal.detail, ref=refusal.ref)
        await self.send(text_data=protocol.error_frame(refusal))

    async def fault(self, ref: str | None = None) -> None:
        """Our failure on a frame: logged with its traceback, and the sender told to retry."""
        logs.socket_fault(self)
        await self.refuse(Refusal(Code.UNAVAILABLE, "the server failed on this frame; retry with the same client_id", ref=ref))

    async def _throttle(self, ref: str | None) -> None:
        # One bucket per person (a user, or a guest's address), shared by all
        # their sockets, and by every process when Redis is configured.
        wait = await current_hub().take(self.person)
        if not wait:
            self.strikes = 0
            return
        self.strikes += 1
        raise Refusal(Code.RATE_LIMITED, "slow down", ref=ref, retry_after=wait)

    def _may_write(self, ref: str | None) -> None:
        if self.read_only:
            raise Refusal(Code.FORBIDDEN, "this token is read-only", ref=ref)

    async def on_say(self, command: protocol.Say) -> None:
        assert self.seat is not None
        self._may_write(command.client_id)
        # Queued now, in the order the frames came, then settled in the
        # background: the socket reads its next frame without waiting for
        # the store, so one fast client is not capped at one store at a time.
        future = current_writer().submit(
            self.seat.feed.room, services.Draft(self.singer, command.body, command.client_id, command.reply_to)
        )
        task = asyncio.ensure_future(self._settle_say(future, command.client_id))
        self.saying.add(task)
        task.add_done_callback(self.saying.discard)
        if len(self.saying) >= MAX_SAYS_IN_FLIGHT:
            # Back-pressure: stop reading this socket until a store lands.
            await asyncio.wait(self.saying, return_when=asyncio.FIRST_COMPLETED)

    async def _settle_say(self, future: asyncio.Future, client_id: str | None) -> None:
        try:
            posted = await settled(future)
        except Refusal as refusal:
            await self.refuse(refusal)
            return
        except Exception:
            await self.fault(client_id)
            return
        if not posted.created:
            await self.send(text_data=posted.frame)
        # A new message's acknowledgement is its broadcast, delivered in seq
        # order by the hub; if that broadcast is lost, the hub's resync with
        # the database delivers it within a few seconds.

    async def on_typing(self, command: protocol.Typing) -> None:
        now = time.monotonic()
        if now - self.last_typing < settings.CHOIR_TYPING_INTERVAL:
            return
        self.last_typing = now
        assert self.seat is not None
        if self.user_id is not None:
            # A mute may have come (or gone) since the handshake; guests cannot be muted.
            self.access = await database_sync_to_async(access_for)(self.seat.feed.room, self.singer)
        if not self.access.can_post:
            return
        await presence.typing(self.seat.feed.room.pk, author=self.name, origin=self.conn_id)

    async def on_edit(self, command: protocol.Edit) -> None:
        assert self.seat is not None
        self._may_write(None)
        await database_sync_to_async(services.message_edit)(
            room=self.seat.feed.room, actor=self.singer, seq=command.seq, body=command.body
        )

    async def on_delete(self, command: protocol.Delete) -> None:
        assert self.seat is not None
        self._may_write(None)
        await database_sync_to_async(services.message_delete)(room=self.seat.feed.room, actor=self.singer, seq=command.seq)

    async def on_ping(self, command: protocol.Ping) -> None:
        await self.send(text_data=protocol.PONG)

    async def on_react(self, command: protocol.React) -> None:
        assert self.seat is not None
        self._may_write(None)
        reacted = await database_sync_to_async(services.reaction_toggle)(
            room=self.seat.feed.room, actor=self.singer, seq=command.seq, emoji=command.emoji, on=command.on
        )
        if not reacted.changed:
            # Nothing changed, so nothing is broadcast: the sender still learns the counts.
            await self.send(text_data=reacted.frame)

    async def on_read(self, command: protocol.Read) -> None:
        assert self.seat is not None
        await database_sync_to_async(services.read_mark)(
            room=self.seat.feed.room, reader=self.singer, seq=command.seq, origin=self.conn_id
        )

    handlers = {
        protocol.Say: on_say,
        protocol.Typing: on_typing,
        protocol.Edit: on_edit,
        protocol.Delete: on_delete,
        protocol.Ping: on_ping,
        protocol.React: on_react,
        protocol.Read: on_read,
    }
