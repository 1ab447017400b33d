"""Reads: which rooms a person sees, the pages of a room's history, and what the hubs and the desk look up."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from choir import protocol
from choir.access import MODERATE_ANY_ROOM
from choir.models import Membership, Message, Room, Sanction

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


def message_dict(room_slug: str, row: dict[str, Any]) -> protocol.MessageObject:
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


def message_frame(message: Message, room_slug: str) -> protocol.MessageObject:
    return message_dict(room_slug, {field: getattr(message, field) for field in MESSAGE_FIELDS})


def messages_after(room: Room, after: int, limit: int, *, upto: int | None = None) -> list[protocol.MessageObject]:
    """Messages with seq > after, oldest first."""
    rows = Message.objects.filter(room=room, seq__gt=after)
    if upto is not None:
        rows = rows.filter(seq__lte=upto)
    return [message_dict(room.slug, row) for row in rows.order_by("seq").values(*MESSAGE_FIELDS)[:limit]]


def messages_before(room: Room, before: int | None, limit: int) -> list[protocol.MessageObject]:
    """The `limit` messages just before seq `before` (or the latest), oldest first."""
    rows = Message.objects.filter(room=room)
    if before is not None:
        rows = rows.filter(seq__lt=before)
    page = list(rows.order_by("-seq").values(*MESSAGE_FIELDS)[:limit])
    page.reverse()
    return [message_dict(room.slug, row) for row in page]


def message_range(room_id: int, room_slug: str, first: int, last: int) -> list[protocol.MessageObject]:
    """Messages first..last inclusive, for a hub filling a gap."""
    rows = Message.objects.filter(room_id=room_id, seq__gte=first, seq__lte=last).order_by("seq")
    return [message_dict(room_slug, row) for row in rows.values(*MESSAGE_FIELDS)]


# Rooms -----------------------------------------------------------------------


def room_by_slug(slug: str) -> Room | None:
    return Room.objects.filter(slug=slug).first()


def room_and_members(room_id: int) -> tuple[Room | None, set[int]]:
    """The room, and for a private room the ids of its members (a hub reloading it)."""
    room = Room.objects.filter(pk=room_id).first()
    if room is None or room.is_public:
        return room, set()
    return room, set(Membership.objects.filter(room_id=room_id).values_list("user_id", flat=True))


def current_seq(room_id: int) -> int:
    """The room's latest seq (0 for none, or no such room)."""
    return Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).first() or 0


def current_seqs(room_ids: list[int]) -> dict[int, int]:
    return dict(Room.objects.filter(pk__in=room_ids).values_list("id", "last_seq"))


def replay(room: Room, after: int | None, limit: int) -> tuple[int, list[protocol.MessageObject], tuple[int, int] | None]:
    """The room's latest seq and, for a resume after seq `after`, what to replay.

    Returns (latest, messages to replay, (from, to) skipped or None). When more
    was missed than `limit`, the newest messages are replayed and the older
    range is left for the client to page over HTTP.
    """
    latest = current_seq(room.pk)
    if after is None or after >= latest:
        return latest, [], None
    skipped = None
    start = after
    if latest - after > limit:
        start = latest - limit
        skipped = (after + 1, start)
    return latest, messages_after(room, start, limit, upto=latest), skipped


def rooms_with_latest(rooms: QuerySet[Room]) -> QuerySet[Room]:
    """`rooms`, each with its latest visible message's author and body (two subqueries, not a query per room)."""
    latest = Message.objects.filter(room=OuterRef("pk"), seq=OuterRef("last_seq"), deleted_at__isnull=True)
    return rooms.annotate(
        latest_author=Subquery(latest.values("author_name")[:1]),
        latest_body=Subquery(latest.values("body")[:1]),
    )


def open_rooms() -> list[Room]:
    return list(Room.objects.open().order_by("slug"))


def messages_per_room_since(room_ids: list[int], since: datetime) -> dict[int, int]:
    """How many messages each room received since `since` (rooms with none are absent)."""
    rows = Message.objects.filter(room_id__in=room_ids, sent_at__gte=since).values_list("room").annotate(n=Count("id"))
    return dict(rows)
