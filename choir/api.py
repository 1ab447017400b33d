"""The history API: the same message objects as the socket, the same visibility."""

from __future__ import annotations

from choir.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from choir.access import access_for, singer_for
from choir.models import Room
from choir.selectors import (
    add_mine,
    changed_messages,
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


def _whole(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ValueError(f"'{name}' must be a non-negative whole number")
    return int(raw)


def _signed_in(request: HttpRequest) -> bool:
    return bool(request.user is not None and request.user.is_authenticated)


@require_GET
def rooms(request: HttpRequest) -> JsonResponse:
    found = visible_rooms(request.user).order_by("title")
    signed_in = _signed_in(request)
    if signed_in:
        found = with_unread(found, request.user)
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
                for room in found
            ]
        }
    )


def _visible_room(request: HttpRequest, slug: str) -> Room | None:
    """The room, if the caller may read it: a private one is "not found" to outsiders."""
    room = Room.objects.filter(slug=slug).first()
    if room is None or not access_for(room, singer_for(request.user, request.session)).can_view:
        return None
    return room


def _limit(raw: int | None) -> int:
    cap = settings.CHOIR_HISTORY_PAGE_MAX
    return cap if raw is None else max(1, min(raw, cap))


@require_GET
def room_messages(request: HttpRequest, slug: str) -> JsonResponse:
    room = _visible_room(request, slug)
    if room is None:
        return _error(404, "not_found", "no such room")
    try:
        before = _whole(request.GET.get("before"), "before")
        after = _whole(request.GET.get("after"), "after")
        around = _whole(request.GET.get("around"), "around")
        limit = _whole(request.GET.get("limit"), "limit")
    except ValueError as exc:
        return _error(400, "invalid", str(exc))
    if sum(value is not None for value in (before, after, around)) > 1:
        return _error(400, "invalid", "give one of 'before', 'after' or 'around'")
    limit = _limit(limit)
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
    if _signed_in(request):
        add_mine(page, request.user)
    return JsonResponse(
        {"room": room.slug, "seq": room.last_seq, "rev": room.last_rev, "limit": limit, "has_more": has_more,
         "messages": page}
    )


@require_GET
def room_changes(request: HttpRequest, slug: str) -> JsonResponse:
    """Messages changed after a rev, in the order of their latest change (v1.1)."""
    room = _visible_room(request, slug)
    if room is None:
        return _error(404, "not_found", "no such room")
    try:
        after_rev = _whole(request.GET.get("after_rev"), "after_rev")
        limit = _limit(_whole(request.GET.get("limit"), "limit"))
    except ValueError as exc:
        return _error(400, "invalid", str(exc))
    if after_rev is None:
        return _error(400, "invalid", "'after_rev' is required")
    page = changed_messages(room, after_rev, limit + 1)
    has_more = len(page) > limit
    page = page[:limit]
    if _signed_in(request):
        add_mine(page, request.user)
    return JsonResponse(
        {"room": room.slug, "seq": room.last_seq, "rev": room.last_rev, "limit": limit, "has_more": has_more,
         "messages": page}
    )


@require_GET
def room_search(request: HttpRequest, slug: str) -> JsonResponse:
    """Live messages matching every word of `q`, newest first (v1.1)."""
    room = _visible_room(request, slug)
    if room is None:
        return _error(404, "not_found", "no such room")
    words = " ".join(request.GET.get("q", "").split())
    if not words:
        return _error(400, "invalid", "'q' must hold at least one word")
    if len(words) > SEARCH_WORDS_MAX or "\x00" in words:
        return _error(400, "invalid", f"'q' must be at most {SEARCH_WORDS_MAX} characters of text")
    try:
        before = _whole(request.GET.get("before"), "before")
        limit = _limit(_whole(request.GET.get("limit"), "limit"))
    except ValueError as exc:
        return _error(400, "invalid", str(exc))
    page = search_messages(room, words, before, limit + 1)
    has_more = len(page) > limit
    page = page[:limit]
    if _signed_in(request):
        add_mine(page, request.user)
    return JsonResponse({"room": room.slug, "q": words, "limit": limit, "has_more": has_more, "messages": page})
