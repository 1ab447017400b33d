"""The history API: the same message objects as the socket, the same visibility."""

from __future__ import annotations

from choir.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from choir.access import access_for, singer_for
from choir.models import Room
from choir.numbers import NotAWholeNumber, whole_number
from choir.selectors import messages_after, messages_before, visible_rooms


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "detail": detail}}, status=status)


@require_GET
def rooms(request: HttpRequest) -> JsonResponse:
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
                for room in visible_rooms(request.user).order_by("title")
            ]
        }
    )


@require_GET
def room_messages(request: HttpRequest, slug: str) -> JsonResponse:
    room = Room.objects.filter(slug=slug).first()
    if room is None or not access_for(room, singer_for(request.user, request.session)).can_view:
        return _error(404, "not_found", "no such room")
    try:
        before = whole_number(request.GET.get("before"), "before")
        after = whole_number(request.GET.get("after"), "after")
        limit = whole_number(request.GET.get("limit"), "limit")
    except NotAWholeNumber as exc:
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
