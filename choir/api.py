"""The HTTP API: history with the socket's message objects and visibility, and
posting, editing and deleting through the same services as the socket."""

from __future__ import annotations

import functools
import json
import math
from typing import Any, Callable

from choir.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from choir import protocol, services, tokens
from choir.fanout import take_for_http
from choir.access import Singer, access_for, display_name, singer_for
from choir.models import Room
from choir.numbers import NotAWholeNumber, whole_number
from choir.protocol import Code, Refusal
from choir.selectors import (
    add_mine,
    changed_messages,
    message_frame,
    messages_after,
    messages_around,
    messages_before,
    search_messages,
    visible_rooms,
    with_unread,
)

SEARCH_WORDS_MAX = 200  # characters of a search query


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "detail": detail}}, status=status)


class Unauthorized(Exception):
    """A bad, expired or revoked bearer token: 401, whatever the endpoint."""


def unauthorized(detail: str) -> JsonResponse:
    response = JsonResponse({"code": "unauthorized", "detail": detail}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="choir"'
    return response


def caller(request: HttpRequest) -> tuple[Singer, tokens.Grant | None]:
    """Who is asking: the bearer token's user when one is sent, else the session's user or guest."""
    raw = tokens.bearer(request.headers.get("Authorization"))
    if raw is None:
        return singer_for(request.user, request.session), None
    if not raw:
        raise Unauthorized("Authorization: Bearer needs a token")
    try:
        grant = tokens.authenticate(raw)
    except tokens.BadToken as exc:
        raise Unauthorized(str(exc)) from None
    return Singer(user=grant.user, name=display_name(grant.user)), grant


def _visible_room(slug: str, singer: Singer, grant: tokens.Grant | None) -> Room | None:
    """The room if this caller may see it; None for a room that is missing, hidden, or outside the token's rooms."""
    room = Room.objects.filter(slug=slug).first()
    if room is None or (grant is not None and not grant.allows_room(room.pk)):
        return None
    return room if access_for(room, singer).can_view else None


@require_GET
def rooms(request: HttpRequest) -> JsonResponse:
    try:
        singer, grant = caller(request)
    except Unauthorized as exc:
        return unauthorized(str(exc))
    listed = visible_rooms(singer.user).order_by("title")
    if grant is not None and grant.room_ids is not None:
        listed = listed.filter(pk__in=grant.room_ids)
    signed_in = singer.user is not None
    if signed_in:
        listed = with_unread(listed, singer.user)
    return JsonResponse(
        {
            "rooms": [
                {
                    "slug": room.slug,
                    "title": room.title,
                    "topic": room.topic,
                    "mode": room.mode,
                    "public": room.is_public,
                    "guests_may_post": room.guests_may_post,
                    "open": room.is_open,
                    "seq": room.last_seq,
                    "last_message_at": room.last_message_at.isoformat() if room.last_message_at else None,
                    "url": room.get_absolute_url(),
                    **(
                        {"read_seq": room.read_seq, "unread": room.unread, "mentions": room.unread_mentions}
                        if signed_in else {}
                    ),
                }
                for room in listed
            ]
        }
    )


def _limit(raw: int | None) -> int:
    cap = settings.CHOIR_HISTORY_PAGE_MAX
    return cap if raw is None else max(1, min(raw, cap))


def _reading(view: Callable[..., JsonResponse]) -> Callable[[HttpRequest, str], JsonResponse]:
    """A read of one room: the caller and the room resolved once, refusals answered alike.

    The view gets (request, room, singer) and raises Refusal (or
    NotAWholeNumber) for bad input: 400, or 404 for a room that is missing or
    hidden from the caller; a bad token is 401.
    """

    @functools.wraps(view)
    def read(request: HttpRequest, slug: str) -> JsonResponse:
        try:
            singer, grant = caller(request)
            room = _visible_room(slug, singer, grant)
            if room is None:
                raise Refusal(Code.NOT_FOUND, "no such room")
            return view(request, room, singer)
        except Unauthorized as exc:
            return unauthorized(str(exc))
        except NotAWholeNumber as exc:
            return _error(400, Code.INVALID, str(exc))
        except Refusal as refusal:
            return _error(404 if refusal.code == Code.NOT_FOUND else 400, refusal.code, refusal.detail)

    return read


def _page(room: Room, singer: Singer, page: list[dict[str, Any]], limit: int, has_more: bool, **more: Any) -> JsonResponse:
    if singer.user is not None:
        add_mine(page, singer.user)
    return JsonResponse(
        {"room": room.slug, "seq": room.last_seq, "rev": room.last_rev, **more, "limit": limit, "has_more": has_more,
         "messages": page}
    )


@_reading
def _room_history(request: HttpRequest, room: Room, singer: Singer) -> JsonResponse:
    before = whole_number(request.GET.get("before"), "before")
    after = whole_number(request.GET.get("after"), "after")
    around = whole_number(request.GET.get("around"), "around")
    limit = _limit(whole_number(request.GET.get("limit"), "limit"))
    if sum(value is not None for value in (before, after, around)) > 1:
        raise Refusal(Code.INVALID, "give one of 'before', 'after' or 'around'")
    # One extra row tells whether there is more beyond this page.
    if around is not None:
        page = messages_around(room, around, limit)
        has_more = bool(page) and (page[0]["seq"] > 1 or page[-1]["seq"] < room.last_seq)
    elif after is not None:
        page = messages_after(room, after, limit + 1)
        has_more = len(page) > limit
        page = page[:limit]
    else:
        page = messages_before(room, before, limit + 1)
        has_more = len(page) > limit
        page = page[-limit:] if has_more else page
    return _page(room, singer, page, limit, has_more)


@require_GET
@_reading
def room_changes(request: HttpRequest, room: Room, singer: Singer) -> JsonResponse:
    """Messages changed after a rev, in the order of their latest change (v1.1)."""
    after_rev = whole_number(request.GET.get("after_rev"), "after_rev")
    limit = _limit(whole_number(request.GET.get("limit"), "limit"))
    if after_rev is None:
        raise Refusal(Code.INVALID, "'after_rev' is required")
    page = changed_messages(room, after_rev, limit + 1)
    return _page(room, singer, page[:limit], limit, len(page) > limit)


@require_GET
@_reading
def room_search(request: HttpRequest, room: Room, singer: Singer) -> JsonResponse:
    """Live messages matching every word of `q`, newest first (v1.1)."""
    words = " ".join(request.GET.get("q", "").split())
    if not words:
        raise Refusal(Code.INVALID, "'q' must hold at least one word")
    if len(words) > SEARCH_WORDS_MAX or "\x00" in words:
        raise Refusal(Code.INVALID, f"'q' must be at most {SEARCH_WORDS_MAX} characters of text")
    before = whole_number(request.GET.get("before"), "before")
    limit = _limit(whole_number(request.GET.get("limit"), "limit"))
    page = search_messages(room, words, before, limit + 1)
    return _page(room, singer, page[:limit], limit, len(page) > limit, q=words)


# Writing -----------------------------------------------------------------------

STATUS = {
    Code.INVALID: 400,
    Code.UNKNOWN_TYPE: 400,
    Code.FORBIDDEN: 403,
    Code.NOT_FOUND: 404,
    Code.RATE_LIMITED: 429,
    Code.UNAVAILABLE: 503,
}


def refused(refusal: Refusal) -> JsonResponse:
    """A refusal as the contract gives it: {"code", "detail"} and the fitting status."""
    body: dict[str, Any] = {"code": refusal.code, "detail": refusal.detail}
    if refusal.ref is not None:
        body["ref"] = refusal.ref
    if refusal.retry_after is not None:
        body["retry_after"] = round(refusal.retry_after, 3)
    response = JsonResponse(body, status=STATUS.get(refusal.code, 400))
    if refusal.retry_after is not None:
        response["Retry-After"] = str(max(1, math.ceil(refusal.retry_after)))
    return response


_csrf = CsrfViewMiddleware(lambda request: None)


def _writer(request: HttpRequest, slug: str) -> tuple[Room, Singer]:
    """The room and the person for a write, or Unauthorized / Refusal.

    A token needs no CSRF token (a program is no browser to be tricked); a
    session does. The person's rate limit is the socket's (choir/fanout/admission.py).
    """
    singer, grant = caller(request)
    if grant is None:
        if _csrf.process_view(request, None, (), {}) is not None:
            raise Refusal(Code.FORBIDDEN, "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken")
        if singer.user is None and not request.session.session_key:
            raise Unauthorized("sign in, or send Authorization: Bearer <token>")
    # The socket's person: a user, or a guest's address (choir/fanout/admission.py).
    person = f"u:{singer.user_id}" if singer.user_id is not None else f"a:{request.META.get('REMOTE_ADDR', '?')}"
    wait = take_for_http(person)
    if wait:
        raise Refusal(Code.RATE_LIMITED, "slow down", retry_after=wait)
    room = _visible_room(slug, singer, grant)
    if room is None:
        raise Refusal(Code.NOT_FOUND, "no such room")
    if grant is not None and grant.read_only:
        raise Refusal(Code.FORBIDDEN, "this token is read-only")
    return room, singer


def _json_object(request: HttpRequest) -> dict[str, Any]:
    limit = settings.CHOIR_MAX_FRAME_BYTES
    if len(request.body) > limit:
        raise Refusal(Code.INVALID, f"request body is larger than {limit} bytes")
    try:
        obj = json.loads(request.body or b"null")
    except ValueError:
        raise Refusal(Code.INVALID, "the body must be a JSON object") from None
    if not isinstance(obj, dict):
        raise Refusal(Code.INVALID, "the body must be a JSON object")
    return obj


def _command(fields: dict[str, Any]) -> protocol.Command:
    # Validated by the socket's own parser, so HTTP and socket refuse alike.
    return protocol.parse_frame(protocol.encode(fields))


def _answering(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        try:
            return view(request, *args, **kwargs)
        except Unauthorized as exc:
            return unauthorized(str(exc))
        except Refusal as refusal:
            return refused(refusal)
        except DatabaseError:
            return refused(Refusal(Code.UNAVAILABLE, "storage failed: nothing was changed, retry"))

    answer.__name__ = view.__name__
    answer.__doc__ = view.__doc__
    return answer


@_answering
def _post_message(request: HttpRequest, slug: str) -> JsonResponse:
    """POST a message: 201 with it; a retried client_id gives 200 and the original."""
    room, singer = _writer(request, slug)
    obj = _json_object(request)
    fields = {"type": "say", "body": obj.get("body"), "client_id": obj.get("client_id")}
    if obj.get("reply_to") is not None:
        fields["reply_to"] = obj["reply_to"]
    say = _command(fields)
    assert isinstance(say, protocol.Say)
    posted = services.message_post(
        room=room, singer=singer, body=say.body, client_id=say.client_id, reply_to=say.reply_to
    )
    return JsonResponse(json.loads(posted.frame), status=201 if posted.created else 200)


@csrf_exempt  # checked in _writer for sessions; tokens need none
@require_http_methods(["GET", "HEAD", "POST"])
def room_messages(request: HttpRequest, slug: str) -> JsonResponse:
    if request.method == "POST":
        return _post_message(request, slug)
    return _room_history(request, slug)


@csrf_exempt  # checked in _writer for sessions; tokens need none
@require_http_methods(["PATCH", "DELETE"])
@_answering
def room_message(request: HttpRequest, slug: str, seq: int) -> JsonResponse:
    """PATCH {"body"} edits a message, DELETE deletes it: the author's, or any for a conductor."""
    room, singer = _writer(request, slug)
    if request.method == "PATCH":
        edit = _command({"type": "edit", "seq": seq, "body": _json_object(request).get("body")})
        assert isinstance(edit, protocol.Edit)
        message = services.message_edit(room=room, actor=singer, seq=edit.seq, body=edit.body)
    else:
        message = services.message_delete(room=room, actor=singer, seq=seq)
    return JsonResponse(message_frame(message, room.slug))
