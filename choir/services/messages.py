"""Posting, editing and deleting messages: check, store, then broadcast on commit.

The socket writer (choir/writer.py) batches posts through `messages_post_many`;
everything else posts one message with `message_post`.

Long because posting, editing and deleting share one room lock, one check of
who may change a message and one rev counter; split, each would re-import the
others' private steps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from choir import broadcast, events, mentions, metrics, protocol, signals
from choir.access import ANNOUNCE, DELETE_OLD_MESSAGES, SYSTEM_NAME, Access, Singer, Standing, access_for, standing_in
from choir.models import Mention, Message, Room
from choir.protocol import Code, Refusal
from choir.selectors import message_frame
from choir.services import audit, outward
from choir.services.authority import require_actor, require_perm

log = logging.getLogger("choir.services")



@dataclass(frozen=True, slots=True)
class Posted:
    message: Message
    frame: str  # the `message` frame, serialised once
    created: bool  # False when an idempotent retry found the original


def _unavailable(ref: str | None) -> Refusal:
    return Refusal(Code.UNAVAILABLE, "storage failed: nothing was stored, retry with the same client_id", ref=ref)


@dataclass(frozen=True, slots=True)
class Draft:
    """One message someone asked to post."""

    singer: Singer
    body: str
    client_id: str | None = None
    reply_to: int | None = None  # seq of the message this answers, in the same room


def message_post(
    *,
    room: Room,
    singer: Singer,
    body: str,
    client_id: str | None = None,
    announcement: bool = False,
    reply_to: int | None = None,
) -> Posted:
    """Store a message under the room's next seq, then broadcast it.

    The posting rules are checked on every post against the room row as it is
    under the seq lock, so a change made a moment ago (stage mode, archive,
    a mute) applies at once. Announcements skip the posting rules (but
    still need an open room); their singer must hold choir.announce (or be
    SYSTEM).
    """
    outcome = messages_post(room=room, drafts=[Draft(singer, body, client_id, reply_to)], announcement=announcement)[0]
    if isinstance(outcome, Refusal):
        raise outcome
    return outcome


def messages_post(*, room: Room, drafts: list[Draft], announcement: bool = False) -> list[Posted | Refusal]:
    """Post several messages to one room in one transaction (see messages_post_many)."""
    return messages_post_many(items=[(room, draft) for draft in drafts], announcement=announcement)


Outcome = Posted | Refusal


def messages_post_many(*, items: list[tuple[Room, Draft]], announcement: bool = False) -> list[Outcome]:
    """Post messages to one or more rooms in one transaction (see message_post).

    Each item gets its own outcome, in order: the message stored (or, for a
    retried client_id, the original), or the Refusal that stopped it. A room's
    stored drafts take consecutive seqs in the order given. The socket writer
    (choir/writer.py) gathers whatever arrives while a batch is being stored,
    so a busy process costs one transaction per batch rather than per message.
    """
    outcomes: list[Outcome | None] = [None] * len(items)
    for index, (_, draft) in enumerate(items):
        try:
            protocol.clean_body(draft.body, ref=draft.client_id)
            if announcement:
                require_perm(require_actor(draft.singer), ANNOUNCE, "announce")
        except Refusal as refusal:
            outcomes[index] = refusal
    try:
        context = _Context(items, outcomes)
        todo = [index for index, outcome in enumerate(outcomes) if outcome is None]
        if todo:
            try:
                # Optimistic: most posts are not retries, and the unique index
                # catches those that are, so no lookup is paid up front.
                _store(items, outcomes, todo, announcement, context)
            except IntegrityError:
                # A client_id is already stored (a retry) or just raced in; the
                # whole transaction, seqs included, rolled back. Answer retries
                # with their originals and store the rest again.
                for index in todo:
                    outcomes[index] = None
                _answer_retries(items, outcomes)
                todo = [index for index in todo if outcomes[index] is None]
                if todo:
                    try:
                        _store(items, outcomes, todo, announcement, context)
                    except IntegrityError:
                        if len(todo) == 1:
                            raise
                        # A race in between: settle each draft on its own.
                        for index in todo:
                            outcomes[index] = messages_post_many(items=[items[index]], announcement=announcement)[0]
    except DatabaseError:
        log.warning("messages_post storage failure", exc_info=True)
        return [
            o if isinstance(o, Refusal) or (o is not None and not o.created) else _unavailable(d.client_id)
            for o, (_, d) in zip(outcomes, items)
        ]
    return outcomes  # type: ignore[return-value]


class _Context:
    """What a batch's messages refer to, read once per batch before the store:
    the parents of replies (a missing one refuses its draft) and the users
    that bodies mention (one query whatever the batch size)."""

    def __init__(self, items: list[tuple[Room, Draft]], outcomes: list[Outcome | None]) -> None:
        self.parents: dict[tuple[int, int], Message] = {}
        wanted: dict[int, set[int]] = {}
        for index, (room, draft) in enumerate(items):
            if outcomes[index] is None and draft.reply_to is not None:
                wanted.setdefault(room.pk, set()).add(draft.reply_to)
        for room_id, seqs in wanted.items():
            for parent in Message.objects.filter(room_id=room_id, seq__in=seqs, deleted_at__isnull=True).order_by():
                self.parents[room_id, parent.seq] = parent
        for index, (room, draft) in enumerate(items):
            if outcomes[index] is None and draft.reply_to is not None and (room.pk, draft.reply_to) not in self.parents:
                outcomes[index] = Refusal(
                    Code.NOT_FOUND, f"no message {draft.reply_to} in this room to reply to", ref=draft.client_id
                )
        live = [index for index, outcome in enumerate(outcomes) if outcome is None]
        names, self.user_ids = mentions.resolve(items[index][1].body for index in live)
        self.mentions: dict[int, list[str]] = dict(zip(live, names))


def _person(singer: Singer) -> Any:
    return singer.user_id if singer.user_id is not None else singer.guest_key


def _answer_retries(items: list[tuple[Room, Draft]], outcomes: list[Outcome | None]) -> None:
    """Find drafts whose client_id is already stored for their author (one query)."""
    wanted = [(room, d) for (room, d), o in zip(items, outcomes) if o is None and d.client_id is not None]
    if not wanted:
        return
    rows = Message.objects.filter(
        room_id__in={room.pk for room, _ in wanted}, client_id__in={d.client_id for _, d in wanted}
    ).order_by()
    found = {(m.room_id, m.author_id or m.guest_key, m.client_id): m for m in rows}
    for index, (room, draft) in enumerate(items):
        if outcomes[index] is None and draft.client_id is not None:
            original = found.get((room.pk, _person(draft.singer), draft.client_id))
            if original is not None:
                outcomes[index] = Posted(original, protocol.encode(message_frame(original, room.slug)), created=False)


def _store(
    items: list[tuple[Room, Draft]], outcomes: list[Outcome | None], todo: list[int], announcement: bool,
    context: _Context,
) -> None:
    by_room: dict[int, list[int]] = {}
    for index in todo:
        by_room.setdefault(items[index][0].pk, []).append(index)
    standings: dict[tuple[int, Any], Standing] = {}
    if not announcement:
        for index in todo:
            room, draft = items[index]
            if (room.pk, _person(draft.singer)) not in standings:
                standings[room.pk, _person(draft.singer)] = standing_in(room, draft.singer)
    stored: list[tuple[int, Message]] = []
    with transaction.atomic():
        now = timezone.now()
        # Rooms are locked in primary-key order, so two processes storing
        # batches that share rooms cannot deadlock (see allocate_seqs_many).
        allocated = Room.objects.allocate_seqs_many({room_id: len(indexes) for room_id, indexes in by_room.items()}, now=now)
        for room_id in sorted(by_room):
            indexes = by_room[room_id]
            room = items[indexes[0]][0]
            fresh = allocated.get(room_id)
            if fresh is None:
                for index in indexes:
                    outcomes[index] = Refusal(Code.FORBIDDEN, "this room is closed", ref=items[index][1].client_id)
                continue
            first = fresh.pop("last_seq") - len(indexes) + 1
            accepted = _accept(room, fresh, items, indexes, outcomes, standings, announcement)
            if len(accepted) < len(indexes):
                # Give back the seqs of refused drafts: still under the lock, so no gap.
                Room.objects.filter(pk=room_id).update(last_seq=F("last_seq") - (len(indexes) - len(accepted)))
            for offset, index in enumerate(accepted):
                singer, draft = items[index][1].singer, items[index][1]
                stored.append((index, Message(
                    room=room,
                    seq=first + offset,
                    author=singer.user,
                    guest_key=singer.guest_key if singer.user is None else "",
                    author_name=singer.name if not announcement or singer.user else SYSTEM_NAME,
                    body=draft.body,
                    client_id=draft.client_id,
                    sent_at=now,
                    reply_to=context.parents.get((room_id, draft.reply_to)) if draft.reply_to is not None else None,
                    mentions=context.mentions.get(index, []),
                    reactions={},
                )))
        Message.objects.insert_returning_ids([message for _, message in stored])
        named = [row for _, m in stored if m.mentions for row in mentions.rows_for(m, m.mentions, context.user_ids)]
        if named:
            Mention.objects.bulk_create(named)
        per_room: dict[int, list[tuple[int, str]]] = {}
        for index, message in stored:
            frame = protocol.encode(message_frame(message, message.room.slug))
            outcomes[index] = Posted(message, frame, created=True)
            per_room.setdefault(message.room_id, []).append((message.seq, frame))
        for room_id, items_of_room in per_room.items():
            # One event per room and batch: one publish, one write per socket.
            broadcast.on_commit(room_id, events.messages(items_of_room))
        outward.messages_posted([message for _, message in stored])
    metrics.MESSAGES_STORED.inc(len(stored))
    # The same client_id twice in one batch: the second gets what the first stored.
    for index in todo:
        if outcomes[index] is None:
            room, draft = items[index]
            outcomes[index] = next(
                Posted(o.message, o.frame, created=False)
                for j, o in enumerate(outcomes)
                if isinstance(o, Posted) and items[j][0].pk == room.pk and items[j][1].client_id == draft.client_id
                and _person(items[j][1].singer) == _person(draft.singer)
            )


def _accept(
    room: Room,
    fresh: dict[str, Any],
    items: list[tuple[Room, Draft]],
    indexes: list[int],
    outcomes: list[Outcome | None],
    standings: dict[tuple[int, Any], Standing],
    announcement: bool,
) -> list[int]:
    """Which of a room's drafts may be stored, checked against its locked row."""
    accepted = []
    slowed: set[Any] = set()
    seen: set[tuple[Any, str]] = set()
    for index in indexes:
        draft = items[index][1]
        person = _person(draft.singer)
        if draft.client_id is not None:
            if (person, draft.client_id) in seen:
                continue  # a twin earlier in this batch; answered after the store
            seen.add((person, draft.client_id))
        if not announcement:
            try:
                if fresh["slow_mode_seconds"] and person in slowed:
                    raise Refusal(
                        Code.RATE_LIMITED, f"slow mode: one message per {fresh['slow_mode_seconds']} s",
                        ref=draft.client_id, retry_after=float(fresh["slow_mode_seconds"]),
                    )
                access = _check_may_post(room, fresh, draft.singer, standings[room.pk, person], draft.client_id)
            except Refusal as refusal:
                outcomes[index] = refusal
                continue
            if draft.singer.user is not None and not access.is_conductor:
                slowed.add(person)  # a second post in one batch would dodge slow mode's query
        accepted.append(index)
    return accepted


def _check_may_post(
    room: Room, fresh: dict[str, Any], singer: Singer, standing: Standing, client_id: str | None
) -> Access:
    """Raise Refusal unless the singer may post now; `fresh` is the locked room row."""
    current_room = Room(pk=room.pk, slug=room.slug, status=Room.Status.OPEN, **fresh)
    current = access_for(current_room, singer, standing)
    if not current.can_post:
        raise Refusal(Code.FORBIDDEN, current.why_not_post, ref=client_id)
    slow = current_room.slow_mode_seconds
    if slow and singer.user is not None and not current.is_conductor:
        since = timezone.now() - timedelta(seconds=slow)
        last = (
            Message.objects.filter(room=room, author=singer.user, sent_at__gt=since)
            .order_by("-seq")
            .values_list("sent_at", flat=True)
            .first()
        )
        if last is not None:
            wait = slow - (timezone.now() - last).total_seconds()
            raise Refusal(
                Code.RATE_LIMITED, f"slow mode: one message per {slow} s", ref=client_id, retry_after=max(wait, 0.1)
            )
    return current


def _find_message(room: Room, seq: int) -> Message:
    message = Message.objects.filter(room=room, seq=seq, deleted_at__isnull=True).first()
    if message is None:
        raise Refusal(Code.NOT_FOUND, f"no message {seq} in this room")
    return message


def _check_may_change(message: Message, actor: Singer, room: Room, *, moderator: bool, verb: str) -> None:
    """Authors change their own messages while they may act in the room (a mute
    stops edits, a ban everything); conductors change anyone's. moderator=True
    (the admin, bulk actions) asks for a conductor, authorship aside."""
    require_actor(actor)
    if moderator or actor.user is None or message.author_id != actor.user.pk:
        if not actor.is_system and not access_for(room, actor).is_conductor:
            raise Refusal(Code.FORBIDDEN, f"only the author or a conductor may {verb} this message")
        return
    access = access_for(room, actor)
    if access.is_conductor:
        return
    if verb == "delete" and access.can_view:
        return  # a mute stops new words, not taking one's own back
    if not access.can_act:
        raise Refusal(Code.FORBIDDEN, access.why_not_act)


def locked_message(room: Room, seq: int) -> tuple[Message, int]:
    """Take the room's next rev (locking its row) and read the message under that lock.

    Every change to a message goes through here, inside the caller's
    transaction, so changes to a room are numbered in the order they are
    stored; raising (not_found, or any refusal) rolls the rev back.
    """
    rev = Room.objects.allocate_rev(room.pk)
    return _find_message(room, seq), rev


def message_edit(*, room: Room, actor: Singer, seq: int, body: str, moderator: bool = False) -> Message:
    """Change a message's body: its author (unless muted or banned) or a conductor."""
    body = protocol.clean_body(body, ref=None)
    message = _find_message(room, seq)
    _check_may_change(message, actor, room, moderator=moderator, verb="edit")
    (names,), ids = mentions.resolve([body])
    with transaction.atomic():
        message, rev = locked_message(room, seq)
        message.body = body
        message.edited_at = timezone.now()
        message.mentions = names
        message.rev = rev
        message.save(update_fields=["body", "edited_at", "mentions", "rev"])
        Mention.objects.filter(message=message).delete()
        Mention.objects.bulk_create(mentions.rows_for(message, names, ids))
        if message.author_id != actor.user_id:
            audit.record(actor, room, "edit", target_user_id=message.author_id, target_seq=seq)
        outward.tell(
            room, "message.changed", outward.message_data(message, room),
            signals.message_changed, Message, message=message, actor=actor,
        )
        frame = protocol.edited_frame(
            room=room.slug, seq=seq, body=body, edited_at=message.edited_at, rev=rev, mentions=names
        )
        broadcast.on_commit(room.pk, events.change(rev, frame))
    return message


def message_delete(*, room: Room, actor: Singer, seq: int, moderator: bool = False) -> Message:
    """Delete a message; it keeps its seq, so nobody's numbering shifts."""
    message = _find_message(room, seq)
    _check_may_change(message, actor, room, moderator=moderator, verb="delete")
    with transaction.atomic():
        message, rev = locked_message(room, seq)
        message.deleted_at = timezone.now()
        message.body = ""
        message.mentions = []
        message.rev = rev
        message.save(update_fields=["deleted_at", "body", "mentions", "rev"])
        # A deleted message no longer counts as a mention of anyone.
        Mention.objects.filter(message=message).delete()
        if message.author_id != actor.user_id:
            audit.record(actor, room, "delete", target_user_id=message.author_id, target_seq=seq)
        outward.tell(
            room, "message.deleted", outward.message_data(message, room),
            signals.message_deleted, Message, message=message, actor=actor,
        )
        broadcast.on_commit(room.pk, events.change(rev, protocol.deleted_frame(room=room.slug, seq=seq, rev=rev)))
    return message


def messages_prune(
    *,
    room: Room,
    actor: Singer,
    older_than: Any,
    batch_size: int = 1000,
    dry_run: bool = False,
    on_batch: Any = None,
) -> int:
    """Delete a room's messages sent before `older_than`, in batches.

    The rest keep their seqs (numbering never shifts); the room's counter is
    untouched, so new messages continue after the latest one. Returns how many
    rows were (or, with dry_run, would be) deleted. Retention is for
    holders of choir.delete_message: in practice `choir_prune`, as SYSTEM.
    """
    require_perm(actor, DELETE_OLD_MESSAGES, "prune a room's history")
    rows = Message.objects.filter(room=room, sent_at__lt=older_than)
    if dry_run:
        return rows.count()
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(rows.order_by("seq").values_list("id", flat=True)[:batch_size])
            if not ids:
                break
            Message.objects.filter(id__in=ids).delete()
        deleted += len(ids)
        if on_batch is not None:
            on_batch(len(ids))
    if deleted:
        audit.record(actor, room, "prune", detail=f"{deleted} messages before {older_than:%Y-%m-%d %H:%M}")
    return deleted

