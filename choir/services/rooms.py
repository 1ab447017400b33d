"""Rooms and their members: create, change, archive, reopen, delete.

Each needs the model permission Django's admin asks for the same change
(`choir.add_room`, `choir.change_room`, `choir.delete_room`, and the
`*_membership` ones), so a change the admin allows the service allows too.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from choir import broadcast, events, signals
from choir.access import Singer
from choir.models import Membership, Room
from choir.protocol import Close, Code, Refusal
from choir.services import audit, outward
from choir.services.authority import require_perm


def room_create(*, slug: str, title: str, actor: Singer, **fields: Any) -> Room:
    require_perm(actor, "choir.add_room", "create rooms")
    with transaction.atomic():
        room = Room.objects.create(slug=slug, title=title, **fields)
        if not actor.is_system:
            audit.record(actor, room, "room_create")
        _opened(room, actor, reopened=False)
    return room


def _opened(room: Room, actor: Singer | None, *, reopened: bool) -> None:
    outward.tell(
        room, "room.opened", {**outward.room_data(room), "reopened": reopened},
        signals.room_opened, Room, actor=actor, reopened=reopened,
    )


def room_save(*, room: Room, actor: Singer, changed: list[str]) -> Room:
    """Save a room edited as a whole (the admin form) and tell open sockets.

    Archiving closes every socket with 4410; any other change makes every
    process reload the room, so mode, guest and slow-mode rules apply at once.
    """
    if room.pk is None:
        require_perm(actor, "choir.add_room", "create rooms")
        with transaction.atomic():
            room.save()
            audit.record(actor, room, "room_create")
            _opened(room, actor, reopened=False)
        return room
    require_perm(actor, "choir.change_room", "change rooms")
    previous = Room.objects.filter(pk=room.pk).values_list("status", flat=True).first()
    fields = [name for name in changed if name not in {"status", "last_seq", "last_message_at"}]
    with transaction.atomic():
        if fields:
            room.save(update_fields=fields)
            audit.record(actor, room, "room_update", detail=", ".join(fields))
            broadcast.on_commit(room.pk, events.room_changed())
            outward.tell(
                room, "room.changed", {**outward.room_data(room), "changed": fields},
                signals.room_changed, Room, actor=actor, changed=fields,
            )
    if "status" in changed and room.status != previous:
        if room.status == Room.Status.ARCHIVED:
            room_archive(room=room, actor=actor)
        else:
            room_reopen(room=room, actor=actor)
    return room


def room_ensure_lobby() -> Room:
    """The public room every fresh install has, where guests may post.

    Setup's own step, with nobody behind it (it only ever creates this one room).
    """
    with transaction.atomic():
        room, created = Room.objects.get_or_create(
            slug="lobby",
            defaults={"title": "Lobby", "topic": "Say hello to the choir", "is_public": True, "guests_may_post": True},
        )
        if created:
            _opened(room, None, reopened=False)
    return room


def room_archive(*, room: Room, actor: Singer, reason: str = "this room was closed") -> Room:
    """Close a room: every open socket gets `closing` and 4410, on every process."""
    require_perm(actor, "choir.change_room", "archive rooms")
    with transaction.atomic():
        Room.objects.filter(pk=room.pk).update(status=Room.Status.ARCHIVED)
        room.status = Room.Status.ARCHIVED
        audit.record(actor, room, "room_archive", detail=reason)
        broadcast.on_commit(room.pk, events.close(Close.ROOM_CLOSED, reason))
        outward.tell(
            room, "room.archived", {**outward.room_data(room), "reason": reason},
            signals.room_archived, Room, actor=actor, reason=reason,
        )
    return room


def room_delete(*, room: Room, actor: Singer) -> None:
    """Delete a room and its history; open sockets get `closing` and 4410 first."""
    require_perm(actor, "choir.delete_room", "delete rooms")
    with transaction.atomic():
        audit.record(actor, None, "room_delete", detail=f"{room.slug}: {room.title}")
        broadcast.on_commit(room.pk, events.close(Close.ROOM_CLOSED, "this room was deleted"))
        room.delete()


def room_reopen(*, room: Room, actor: Singer) -> Room:
    require_perm(actor, "choir.change_room", "reopen rooms")
    with transaction.atomic():
        Room.objects.filter(pk=room.pk).update(status=Room.Status.OPEN)
        room.status = Room.Status.OPEN
        audit.record(actor, room, "room_reopen")
        broadcast.on_commit(room.pk, events.room_changed())
        _opened(room, actor, reopened=True)
    return room


def membership_set(*, room: Room, actor: Singer, user: Any, role: str) -> Membership:
    if Membership.objects.filter(room=room, user=user).exists():
        require_perm(actor, "choir.change_membership", "change memberships")
    else:
        require_perm(actor, "choir.add_membership", "add members")
    if role not in Membership.Role.values:
        raise Refusal(Code.INVALID, f"no role called {role!r}")
    with transaction.atomic():
        membership, _ = Membership.objects.update_or_create(room=room, user=user, defaults={"role": role})
        audit.record(actor, room, "membership", target_user_id=user.pk, detail=role)
    return membership


def membership_remove(*, room: Room, actor: Singer, user: Any) -> None:
    """Take someone out of a room; in a private room their sockets close with
    4404, as if the room did not exist (which is all a non-member may know)."""
    require_perm(actor, "choir.delete_membership", "remove members")
    with transaction.atomic():
        Membership.objects.filter(room=room, user=user).delete()
        audit.record(actor, room, "membership_remove", target_user_id=user.pk)
        if not room.is_public:
            broadcast.on_commit(room.pk, events.eject(user.pk, Close.NOT_FOUND, "no such room"))

