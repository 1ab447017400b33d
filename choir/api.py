"""The history API: the same message objects as the socket, the same visibility."""

from __future__ import annotations

from choir.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from choir import tokens
from choir.access import Singer, access_for, display_name, singer_for
from choir.models import Room
from choir.selectors import messages_after, messages_before, visible_rooms


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
        raise Unauthorized("use Authorization: Bearer <token>")
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


def _whole(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ValueError(f"'{name}' must be a non-negative whole number")
    return int(raw)


@require_GET
def rooms(request: HttpRequest) -> JsonResponse:
    try:
        singer, grant = caller(request)
    except Unauthorized as exc:
        return unauthorized(str(exc))
    listed = visible_rooms(singer.user)
    if grant is not None and grant.room_ids is not None:
        listed = listed.filter(pk__in=grant.room_ids)
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
                }
                for room in listed.order_by("title")
            ]
        }
    )


def _room_history(request: HttpRequest, slug: str) -> JsonResponse:
    try:
        singer, grant = caller(request)
    except Unauthorized as exc:
        return unauthorized(str(exc))
    room = _visible_room(slug, singer, grant)
    if room is None:
        return _error(404, "not_found", "no such room")
    try:
        before = _whole(request.GET.get("before"), "before")
        after = _whole(request.GET.get("after"), "after")
        limit = _whole(request.GET.get("limit"), "limit")
    except ValueError as exc:
        return _error(400, "invalid", str(exc))
    if before is not None and after is not None:
        return _error(400, "invalid", "give 'before' or 'after', not both")
    cap = settings.CHOIR_HISTORY_PAGE_MAX
    limit = cap if limit is None else max(1, min(limit, cap))
    # One extra row tells whether there is more beyond this page.
    if after is not None:
        page = messages_after(room, after, limit + 1)
        has_more = len(page) > limit
        page = page[:limit]
    else:
        page = messages_before(room, before, limit + 1)
        has_more = len(page) > limit
        page = page[-limit:] if has_more else page
    return JsonResponse({"room": room.slug, "seq": room.last_seq, "limit": limit, "has_more": has_more, "messages": page})


@require_GET
def room_messages(request: HttpRequest, slug: str) -> JsonResponse:
    return _room_history(request, slug)
