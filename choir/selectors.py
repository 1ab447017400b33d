"""Reads: which rooms a person sees, the pages of a room's history, and what the hubs and the desk look up."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from choir import protocol
from choir.access import MODERATE_ANY_ROOM
from choir.models import Membership, Mention, Message, Reaction, ReadMarker, Room, Sanction

MESSAGE_FIELDS = (
    "id", "seq", "author_name", "body", "client_id", "sent_at", "edited_at", "deleted_at", "reactions", "mentions",
    "rev",
    # The parent of a reply, joined by primary key: its excerpt is always its current body.
    "reply_to__seq", "reply_to__author_name", "reply_to__body", "reply_to__deleted_at",
)


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
    reply_to = None
    if row.get("reply_to__seq") is not None:
        reply_to = protocol.reply_object(
            seq=row["reply_to__seq"], author=row["reply_to__author_name"], body=row["reply_to__body"],
            deleted=row["reply_to__deleted_at"] is not None,
        )
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
        reply_to=reply_to,
        reactions=row["reactions"],
        mentions=row["mentions"],
    )


def message_frame(message: Message, room_slug: str) -> protocol.MessageObject:
    row = {field: getattr(message, field) for field in MESSAGE_FIELDS if "__" not in field}
    if message.reply_to_id is not None:
        parent = message.reply_to  # set by the poster; one query for a retry's original
        if parent is not None:
            row.update({
                "reply_to__seq": parent.seq, "reply_to__author_name": parent.author_name,
                "reply_to__body": parent.body, "reply_to__deleted_at": parent.deleted_at,
            })
    return message_dict(room_slug, row)


def change_object(room_slug: str, row: dict[str, Any]) -> dict[str, Any]:
    """One changed message's latest state as a change frame (resume replays these).

    A deletion is final; otherwise an edited message is an `edited` frame
    carrying its reactions too, since its latest change may have been a
    reaction on top of the edit; an unedited one is a `reactions` frame.
    """
    if row["deleted_at"] is not None:
        return {"type": "deleted", "room": room_slug, "seq": row["seq"], "rev": row["rev"]}
    if row["edited_at"] is not None:
        return protocol.edited_object(
            room=room_slug, seq=row["seq"], body=row["body"], edited_at=row["edited_at"], rev=row["rev"],
            mentions=row["mentions"], reactions=row["reactions"] or {},
        )
    return protocol.reactions_object(room=room_slug, seq=row["seq"], rev=row["rev"], counts=row["reactions"] or {})


CHANGE_FIELDS = ("seq", "rev", "body", "edited_at", "deleted_at", "reactions", "mentions")


def changes_between(
    room_id: int,
    room_slug: str,
    after_rev: int,
    upto_rev: int | None,
    *,
    seq_upto: int | None = None,
    newest: int | None = None,
) -> list[dict[str, Any]]:
    """Change frames of messages whose latest change has after_rev < rev (<= upto_rev), in rev order.

    With `seq_upto`, only messages the client already has; with `newest`,
    only the last that many changes (resume replays the newest and leaves
    the older ones to the changes API).
    """
    rows = Message.objects.filter(room_id=room_id, rev__gt=after_rev)
    if upto_rev is not None:
        rows = rows.filter(rev__lte=upto_rev)
    if seq_upto is not None:
        rows = rows.filter(seq__lte=seq_upto)
    if newest is not None:
        found = list(rows.order_by("-rev").values(*CHANGE_FIELDS)[:newest])
        found.reverse()
    else:
        found = list(rows.order_by("rev").values(*CHANGE_FIELDS))
    return [change_object(room_slug, row) for row in found]


def changed_messages(room: Room, after_rev: int, limit: int) -> list[dict[str, Any]]:
    """Messages changed after `after_rev`, latest state, oldest change first, each with its `rev`."""
    rows = Message.objects.filter(room=room, rev__gt=after_rev).order_by("rev").values(*MESSAGE_FIELDS)[:limit]
    found = []
    for row in rows:
        message = message_dict(room.slug, row)
        message["rev"] = row["rev"]
        found.append(message)
    return found


def add_mine(messages: list[dict[str, Any]], user: Any) -> list[dict[str, Any]]:
    """Give each message of a page `mine`: the caller's own reactions (one query)."""
    ids = [m["id"] for m in messages]
    mine: dict[int, list[str]] = {}
    rows = Reaction.objects.filter(user=user, message_id__in=ids).order_by("created_at", "id")
    for message_id, emoji in rows.values_list("message_id", "emoji"):
        mine.setdefault(message_id, []).append(emoji)
    for message in messages:
        message["mine"] = [] if message["deleted"] else mine.get(message["id"], [])
    return messages


def read_seq(room: Room, user: Any) -> int | None:
    """The user's read marker in the room (None: never read, or a guest)."""
    if user is None or not user.is_authenticated:
        return None
    return ReadMarker.objects.filter(room=room, user=user).values_list("seq", flat=True).first()


def with_unread(rooms: QuerySet[Room], user: Any) -> QuerySet[Room]:
    """Annotate `read_seq`, `unread` and `unread_mentions` for a signed-in user.

    Each count is a correlated subquery over an index range that starts at
    the marker (message_live_seq, mention_unread): it costs the unread rows,
    never the whole room, and the live-seq index carries the author, so
    PostgreSQL answers from the index alone.
    """
    marker = Subquery(ReadMarker.objects.filter(room=OuterRef("pk"), user=user).values("seq")[:1])
    since = Coalesce(marker, Value(0), output_field=IntegerField())
    unread = (
        Message.objects.filter(room=OuterRef("pk"), deleted_at__isnull=True, seq__gt=OuterRef("read_from"))
        .filter(Q(author__isnull=True) | ~Q(author=user))
        .order_by()
        .values("room")
        .annotate(n=Count("*"))
        .values("n")
    )
    mentions = (
        Mention.objects.filter(user=user, room=OuterRef("pk"), seq__gt=OuterRef("read_from"))
        .order_by()
        .values("room")
        .annotate(n=Count("*"))
        .values("n")
    )
    return rooms.annotate(read_seq=marker, read_from=since).annotate(
        unread=Coalesce(Subquery(unread), Value(0)), unread_mentions=Coalesce(Subquery(mentions), Value(0))
    )


SEARCH_CONFIG = "simple"  # no stemming, no stop words: chat is many languages, and every word must match


def search_messages(room: Room, words: str, before: int | None, limit: int) -> list[dict[str, Any]]:
    """Live messages whose body matches every word, newest first.

    PostgreSQL: full text against the GIN index of migration 0003 (the
    expression here is the one it indexes). Elsewhere each word is a
    case-insensitive substring test, which is a scan, fine for SQLite's
    small single-server sites.
    """
    rows = Message.objects.filter(room=room, deleted_at__isnull=True)
    if before is not None:
        rows = rows.filter(seq__lt=before)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        rows = rows.annotate(found=SearchVector("body", config=SEARCH_CONFIG)).filter(
            found=SearchQuery(words, config=SEARCH_CONFIG, search_type="plain")
        )
    else:
        for word in words.split():
            rows = rows.filter(body__icontains=word)
    return [message_dict(room.slug, row) for row in rows.order_by("-seq").values(*MESSAGE_FIELDS)[:limit]]


def messages_around(room: Room, around: int, limit: int) -> list[dict[str, Any]]:
    """`limit` messages with seq `around` in the middle, oldest first."""
    earlier = messages_before(room, around + 1, limit // 2 + 1)
    later = messages_after(room, around, limit - len(earlier))
    if len(earlier) + len(later) < limit and earlier:
        # Near the end of the room: fill the page from before instead.
        earlier = messages_before(room, around + 1, limit - len(later))
    return earlier + later


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


def current_seq_rev(room_id: int) -> tuple[int, int]:
    """The room's latest seq and rev, read together ((0, 0) for no such room)."""
    return Room.objects.filter(pk=room_id).values_list("last_seq", "last_rev").first() or (0, 0)


def current_seqs_revs(room_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Each room's latest (seq, rev), for a hub checking that it missed nothing."""
    rows = Room.objects.filter(pk__in=room_ids).values_list("id", "last_seq", "last_rev")
    return {pk: (seq, rev) for pk, seq, rev in rows}


Span = tuple[int, int]


class Replay(NamedTuple):
    """What a resuming socket is owed (see `replay`)."""

    seq: int  # the room's latest seq
    rev: int  # the room's latest rev
    messages: list[protocol.MessageObject]  # seq > after, current state, seq order
    skipped: Span | None  # seqs not replayed: the client pages them over HTTP
    changes: list[dict[str, Any]]  # change frames for messages up to `after`, rev order
    skipped_revs: Span | None  # revs not replayed: the changes API has them


def replay(room: Room, after: int, limit: int, since_rev: int | None = None) -> Replay:
    """What a socket resuming after seq `after` (and rev `since_rev`) is owed, read after it joined the hub.

    Messages after `after` come in their current state; with `since_rev`, so
    does each message up to `after` whose latest change is newer than
    `since_rev`, once, in rev order (without it, no changes: version 1).
    Past `limit` the newest are replayed and the older range is left to the
    history and changes APIs.

    Every read sees the database at one moment, so a message whose change at
    rev r <= latest rev is followed by another at r' > latest rev is replayed
    as it was at r, and r' then reaches the socket live: read apart, the row
    would say r' and the replay would skip it, losing r.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql" and not _inside_test_transaction():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        # (SQLite: an IMMEDIATE transaction already keeps writers out meanwhile.)
        return _replay_reads(room, after, limit, since_rev)


def _inside_test_transaction() -> bool:
    # An enclosing atomic block (a test's) has already begun the transaction,
    # and PostgreSQL only takes an isolation level before the first query.
    return len(connection.atomic_blocks) > 1


def _replay_reads(room: Room, after: int, limit: int, since_rev: int | None) -> Replay:
    latest, latest_rev = current_seq_rev(room.pk)
    messages: list[protocol.MessageObject] = []
    skipped = None
    if after < latest:
        start = after
        if latest - after > limit:
            start = latest - limit
            skipped = (after + 1, start)
        messages = messages_after(room, start, limit, upto=latest)
    changes: list[dict[str, Any]] = []
    skipped_revs = None
    if since_rev is not None and since_rev < latest_rev:
        changes = changes_between(room.pk, room.slug, since_rev, latest_rev, seq_upto=after, newest=limit + 1)
        if len(changes) > limit:
            changes = changes[1:]
            skipped_revs = (since_rev + 1, changes[0]["rev"] - 1)
    return Replay(latest, latest_rev, messages, skipped, changes, skipped_revs)


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
