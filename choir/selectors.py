"""Reads: which rooms a person sees and the pages of a room's history."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from choir import protocol
from choir.access import MODERATE_ANY_ROOM
from choir.models import Message, Room, Sanction

MESSAGE_FIELDS = ("id", "seq", "author_name", "body", "client_id", "sent_at", "edited_at", "deleted_at")


def visible_rooms(user: Any | None) -> QuerySet[Room]:
    """Rooms a person may see: public ones, plus private ones they belong to,
    less those they are banned from; every room for holders of
    choir.moderate_any_room (staff status alone shows nothing more)."""
    rooms = Room.objects.all()
    if user is not None and user.is_authenticated:
        if user.has_perm(MODERATE_ANY_ROOM):
            return rooms
        banned = Sanction.objects.filter(user=user, kind=Sanction.Kind.BAN, lifted_at__isnull=True).filter(
            Q(until__isnull=True) | Q(until__gt=timezone.now())
        )
        return (
            rooms.filter(Q(is_public=True) | Q(memberships__user=user))
            .exclude(pk__in=banned.values("room_id"))
            .distinct()
        )
    return rooms.filter(is_public=True)


def message_dict(room_slug: str, row: dict[str, Any]) -> dict[str, Any]:
    return protocol.message_object(
        seq=row["seq"],
        id=row["id"],
        room=room_slug,
        author=row["author_name"],
        body=row["body"],
        sent_at=row["sent_at"],
        client_id=row["client_id"],
        edited_at=row["edited_at"],
        deleted=row["deleted_at"] is not None,
    )


def message_frame(message: Message, room_slug: str) -> dict[str, Any]:
    return message_dict(room_slug, {field: getattr(message, field) for field in MESSAGE_FIELDS})


def messages_after(room: Room, after: int, limit: int, *, upto: int | None = None) -> list[dict[str, Any]]:
    """Messages with seq > after, oldest first."""
    rows = Message.objects.filter(room=room, seq__gt=after)
    if upto is not None:
        rows = rows.filter(seq__lte=upto)
    return [message_dict(room.slug, row) for row in rows.order_by("seq").values(*MESSAGE_FIELDS)[:limit]]


def messages_before(room: Room, before: int | None, limit: int) -> list[dict[str, Any]]:
    """The `limit` messages just before seq `before` (or the latest), oldest first."""
    rows = Message.objects.filter(room=room)
    if before is not None:
        rows = rows.filter(seq__lt=before)
    page = list(rows.order_by("-seq").values(*MESSAGE_FIELDS)[:limit])
    page.reverse()
    return [message_dict(room.slug, row) for row in page]


def message_range(room_id: int, room_slug: str, first: int, last: int) -> list[dict[str, Any]]:
    """Messages first..last inclusive, for a hub filling a gap."""
    rows = Message.objects.filter(room_id=room_id, seq__gte=first, seq__lte=last).order_by("seq")
    return [message_dict(room_slug, row) for row in rows.values(*MESSAGE_FIELDS)]
