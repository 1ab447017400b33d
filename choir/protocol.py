"""The wire protocol (docs/protocol.md): parsing client frames, building server frames.

Nothing here touches the database or the network, so every rule of the
contract can be tested on plain values. Long because it is the whole wire
contract, both directions and both versions, in one place to read against
the protocol doc.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, NotRequired, TypedDict

from choir.conf import settings
from choir.numbers import whole_number

PROTOCOL_VERSION = 1
CLIENT_ID_MAX = 64


class Code:
    """Error codes of `error` frames."""

    INVALID = "invalid"
    UNKNOWN_TYPE = "unknown_type"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"


class Close:
    """WebSocket close codes, sent after accept so browsers can show why."""

    GOING_AWAY = 1001
    TOO_BIG = 1009
    TRY_AGAIN = 1013
    UNAUTHORIZED = 4401  # a bad, expired or revoked token
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    SLOW_READER = 4408  # fell too far behind in reading; reconnect with ?after=
    ROOM_CLOSED = 4410
    FLOODING = 4429


class Refusal(Exception):
    """A frame or request was refused; becomes an `error` frame, never a close."""

    def __init__(self, code: str, detail: str, *, ref: str | None = None, retry_after: float | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.ref = ref
        self.retry_after = retry_after


# Client commands ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Say:
    body: str
    client_id: str | None = None
    reply_to: int | None = None  # the seq of an earlier message in the room


@dataclass(frozen=True, slots=True)
class Typing:
    pass


@dataclass(frozen=True, slots=True)
class Edit:
    seq: int
    body: str


@dataclass(frozen=True, slots=True)
class Delete:
    seq: int


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class React:
    seq: int
    emoji: str
    on: bool


@dataclass(frozen=True, slots=True)
class Read:
    seq: int


Command = Say | Typing | Edit | Delete | Ping | React | Read

EMOJI_MAX = 32


def parse_frame(text: str | None = None, data: bytes | None = None) -> Command:
    """Turn one client frame into a command, or raise Refusal.

    A text frame that is not a JSON object is a message whose body is the
    whole text, so the barest client can sing with `socket.send("hi")`.
    """
    if text is None:
        raise Refusal(Code.INVALID, "binary frames are not accepted: send text (JSON or plain)")
    limit = settings.CHOIR_MAX_FRAME_BYTES
    # A character is at most 4 bytes: only long frames need encoding to measure.
    if len(text) > limit // 4 and len(text.encode("utf-8", "surrogatepass")) > limit:
        raise Refusal(Code.INVALID, f"frame is larger than {limit} bytes")
    obj: Any = None
    if text[:1] == "{" or text.lstrip()[:1] == "{":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None  # not JSON after all: plain text, posted as written
        except RecursionError:
            raise Refusal(Code.INVALID, "frame is nested too deeply") from None
        except ValueError:
            # Valid JSON that Python will not hold, such as an integer of
            # thousands of digits: junk, not a message.
            raise Refusal(Code.INVALID, "frame holds a value out of range") from None
    if not isinstance(obj, dict):
        return Say(body=clean_body(text, ref=None), client_id=None)
    return _parse_object(obj)


def _parse_object(obj: dict[str, Any]) -> Command:
    kind = obj.get("type")
    ref = _ref(obj.get("client_id"))
    if kind is None:
        raise Refusal(Code.INVALID, "frame has no 'type'", ref=ref)
    if not isinstance(kind, str):
        raise Refusal(Code.INVALID, "'type' must be a string", ref=ref)
    if kind == "say":
        client_id = _client_id(obj.get("client_id"))
        reply_to = obj.get("reply_to")
        return Say(
            body=clean_body(obj.get("body"), ref=client_id),
            client_id=client_id,
            reply_to=None if reply_to is None else _seq(reply_to, client_id, "reply_to"),
        )
    if kind == "typing":
        return Typing()
    if kind == "ping":
        return Ping()
    if kind == "edit":
        return Edit(seq=_seq(obj.get("seq"), ref), body=clean_body(obj.get("body"), ref=ref))
    if kind == "delete":
        return Delete(seq=_seq(obj.get("seq"), ref))
    if kind == "react":
        on = obj.get("on", True)
        if not isinstance(on, bool):
            raise Refusal(Code.INVALID, "'on' must be true or false", ref=ref)
        return React(seq=_seq(obj.get("seq"), ref), emoji=clean_emoji(obj.get("emoji")), on=on)
    if kind == "read":
        return Read(seq=_seq(obj.get("seq"), ref))
    raise Refusal(Code.UNKNOWN_TYPE, f"unknown frame type {kind[:40]!r}", ref=ref)


def clean_body(body: Any, *, ref: str | None) -> str:
    """Validate a message body; the same rules hold for the socket, admin and commands."""
    if not isinstance(body, str):
        raise Refusal(Code.INVALID, "'body' must be a string", ref=ref)
    if not body.strip():
        raise Refusal(Code.INVALID, "message body is empty", ref=ref)
    if len(body) > settings.CHOIR_MAX_BODY_CHARS:
        raise Refusal(Code.INVALID, f"message body is longer than {settings.CHOIR_MAX_BODY_CHARS} characters", ref=ref)
    if "\x00" in body:
        raise Refusal(Code.INVALID, "message body contains a NUL character", ref=ref)
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        raise Refusal(Code.INVALID, "message body is not valid Unicode (lone surrogate)", ref=ref) from None
    return body


def clean_emoji(emoji: Any) -> str:
    """A reaction: 1 to 32 characters, no whitespace, nothing unprintable."""
    if not isinstance(emoji, str) or not 1 <= len(emoji) <= EMOJI_MAX:
        raise Refusal(Code.INVALID, f"'emoji' must be 1 to {EMOJI_MAX} characters")
    # Not isprintable(): it refuses the zero-width joiners and variation
    # selectors many emoji are built with.
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in emoji):
        raise Refusal(Code.INVALID, "'emoji' may not contain whitespace or control characters")
    try:
        emoji.encode("utf-8")
    except UnicodeEncodeError:
        raise Refusal(Code.INVALID, "'emoji' is not valid Unicode") from None
    return emoji


def _client_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > CLIENT_ID_MAX or not value.isprintable():
        raise Refusal(Code.INVALID, f"'client_id' must be 1 to {CLIENT_ID_MAX} printable characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Refusal(Code.INVALID, "'client_id' is not valid Unicode") from None
    return value


def _ref(value: Any) -> str | None:
    """The client_id to echo in an error's `ref`: only one that could be valid.

    A raw one could hold a lone surrogate (a JSON escape), which cannot be
    sent back as UTF-8 and would break the socket instead of refusing a frame.
    """
    try:
        return _client_id(value)
    except Refusal:
        return None


SEQ_MAX = 2**63 - 1  # the database's bigint


def _seq(value: Any, ref: str | None, name: str = "seq") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= SEQ_MAX:
        raise Refusal(Code.INVALID, f"'{name}' must be a positive whole number", ref=ref)
    return value


def parse_after(raw: str | None) -> int | None:
    """The `?after=` resume point; None when absent."""
    return whole_number(raw, "after")


def parse_rev(raw: str | None) -> int | None:
    """The `?rev=` resume point for changes (v1.1); None when absent."""
    return parse_after(raw)


# Server frames --------------------------------------------------------------
#
# Every server frame is built here. The shapes other modules pass in or get
# back are typed; the rest are spelled out once, in the function that builds them.


class ReplyObject(TypedDict):
    """What a reply shows of its parent (v1.1)."""

    seq: int
    author: str
    excerpt: str


class MessageObject(TypedDict):
    """A message as the socket and the history API both show it."""

    type: Literal["message"]
    seq: int
    id: int
    room: str
    author: str
    body: str
    sent_at: str | None
    client_id: str | None
    edited_at: str | None
    deleted: bool
    reply_to: ReplyObject | None
    reactions: dict[str, int]
    mentions: list[str]
    # The history API adds, for a signed-in caller, the emoji they reacted
    # with, and /changes the message's latest rev.
    mine: NotRequired[list[str]]
    rev: NotRequired[int]


class HelloRoom(TypedDict):
    slug: str
    title: str
    topic: str
    mode: str


class HelloYou(TypedDict):
    name: str
    guest: bool
    can_post: bool
    why_not: str | None
    conductor: bool
    read_seq: NotRequired[int | None]  # v1.1: the read marker, None for guests



def encode(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def isoformat(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def message_object(
    *,
    seq: int,
    id: int,
    room: str,
    author: str,
    body: str,
    sent_at: datetime,
    client_id: str | None,
    edited_at: datetime | None = None,
    deleted: bool = False,
    reply_to: ReplyObject | None = None,
    reactions: dict[str, int] | None = None,
    mentions: list[str] | None = None,
) -> MessageObject:
    """A message as the socket and the history API both show it."""
    return {
        "type": "message",
        "seq": seq,
        "id": id,
        "room": room,
        "author": author,
        "body": "" if deleted else body,
        "sent_at": isoformat(sent_at),
        "client_id": client_id,
        "edited_at": isoformat(edited_at),
        "deleted": deleted,
        "reply_to": reply_to,
        "reactions": {} if deleted or not reactions else reactions,
        "mentions": [] if deleted or not mentions else mentions,
    }


EXCERPT_CHARS = 140


def reply_object(*, seq: int, author: str, body: str, deleted: bool) -> ReplyObject:
    """What a reply shows of its parent: always the parent's current body."""
    return {"seq": seq, "author": author, "excerpt": "" if deleted else body[:EXCERPT_CHARS]}


def hello_frame(
    *, room: HelloRoom, you: HelloYou, seq: int, online: list[str], online_count: int, rev: int = 0
) -> str:
    return encode(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "room": room,
            "you": you,
            "seq": seq,
            "rev": rev,
            "online": online,
            "online_count": online_count,
        }
    )


def synced_frame(seq: int, rev: int | None = None) -> str:
    frame: dict[str, Any] = {"type": "synced", "seq": seq}
    if rev is not None:
        frame["rev"] = rev
    return encode(frame)


def truncated_frame(first: int, last: int) -> str:
    return encode({"type": "truncated", "from": first, "to": last})


def truncated_revs_frame(first: int, last: int) -> str:
    """Changes rev first..last were not replayed: GET /api/rooms/<slug>/changes pages them."""
    return encode({"type": "truncated", "rev_from": first, "rev_to": last})


def edited_object(
    *, room: str, seq: int, body: str, edited_at: datetime | None, rev: int, mentions: list[str] | None = None,
    reactions: dict[str, int] | None = None,
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "edited", "room": room, "seq": seq, "rev": rev, "body": body, "edited_at": isoformat(edited_at),
        "mentions": mentions or [],
    }
    if reactions is not None:
        # A replayed change carries the message's whole state: its latest
        # change may have been a reaction on top of an edit.
        frame["reactions"] = reactions
    return frame


def edited_frame(
    *, room: str, seq: int, body: str, edited_at: datetime | None, rev: int = 0, mentions: list[str] | None = None
) -> str:
    return encode(edited_object(room=room, seq=seq, body=body, edited_at=edited_at, rev=rev, mentions=mentions))


def deleted_frame(*, room: str, seq: int, rev: int = 0) -> str:
    return encode({"type": "deleted", "room": room, "seq": seq, "rev": rev})


def reactions_object(
    *, room: str, seq: int, rev: int, counts: dict[str, int], actor: str | None = None,
    emoji: str | None = None, on: bool | None = None,
) -> dict[str, Any]:
    return {
        "type": "reactions", "room": room, "seq": seq, "rev": rev, "counts": counts,
        "actor": actor, "emoji": emoji, "on": on,
    }


def read_frame(*, room: str, seq: int) -> str:
    return encode({"type": "read", "room": room, "seq": seq})


def presence_frame(
    *, joined: list[str], left: list[str], online: int, joined_count: int | None = None, left_count: int | None = None
) -> str:
    """A presence frame; in a crowd, `joined`/`left` name only some and the counts say how many in all."""
    frame: dict[str, Any] = {"type": "presence", "joined": joined, "left": left, "online": online}
    if joined_count is not None:
        frame["joined_count"] = joined_count
        frame["left_count"] = left_count
    return encode(frame)


def typing_frame(author: str) -> str:
    return encode({"type": "typing", "author": author})


PONG = encode({"type": "pong"})


def error_frame(refusal: Refusal) -> str:
    frame: dict[str, Any] = {"type": "error", "code": refusal.code, "detail": refusal.detail, "ref": refusal.ref}
    if refusal.retry_after is not None:
        frame["retry_after"] = round(refusal.retry_after, 3)
    return encode(frame)


def closing_frame(code: int, reason: str) -> str:
    return encode({"type": "closing", "code": code, "reason": reason})
