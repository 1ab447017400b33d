"""Conductors' powers over a room: redact, bulk delete, mute, ban, slow mode.

A conductor is someone whose room role says so, or who holds
choir.moderate_any_room (see choir.access); staff status alone is not enough.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from choir import broadcast, events, signals
from choir.access import MODERATE_ANY_ROOM, Singer
from choir.models import Message, Room, Sanction
from choir.protocol import Close, Code, Refusal
from choir.services import audit, outward
from choir.services.authority import require_conductor
from choir.services.messages import message_delete, message_edit


REDACTED = "[redacted by a moderator]"
MAX_MUTE_MINUTES = 10 * 365 * 24 * 60  # ten years; longer is "until lifted"


def message_redact(*, room: Room, actor: Singer, seq: int) -> Message:
    """Replace a message's text, keeping that it was there (moderators only)."""
    require_conductor(room, actor)
    return message_edit(room=room, actor=actor, seq=seq, body=REDACTED, moderator=True)


def messages_delete(*, messages: list[Message], actor: Singer) -> int:
    """Bulk delete (admin action); each deletion is broadcast to its room.

    The actor must conduct every room involved: checked for all before any is deleted.
    """
    for room in {message.room_id: message.room for message in messages}.values():
        require_conductor(room, actor)
    count = 0
    for message in messages:
        if message.deleted_at is None:
            message_delete(room=message.room, actor=actor, seq=message.seq, moderator=True)
            count += 1
    return count


def room_set_slow_mode(*, room: Room, actor: Singer, seconds: int) -> Room:
    require_conductor(room, actor)
    if seconds < 0 or seconds > 86_400:
        raise Refusal(Code.INVALID, "slow mode must be between 0 and 86400 seconds")
    with transaction.atomic():
        Room.objects.filter(pk=room.pk).update(slow_mode_seconds=seconds)
        room.slow_mode_seconds = seconds
        audit.record(actor, room, "slow_mode", detail=f"{seconds} s")
        outward.tell(
            room, "room.changed", {**outward.room_data(room), "changed": ["slow_mode_seconds"]},
            signals.room_changed, Room, actor=actor, changed=["slow_mode_seconds"],
        )
        broadcast.on_commit(room.pk, events.room_changed())
    return room


def user_mute(*, room: Room, actor: Singer, user: Any, minutes: int | None, reason: str = "") -> Sanction:
    """Stop a user posting in a room for a time (None = until lifted)."""
    require_conductor(room, actor)
    _refuse_self_or_conductor_everywhere(actor, user)
    if minutes is not None and not 0 <= minutes <= MAX_MUTE_MINUTES:
        raise Refusal(Code.INVALID, f"a mute lasts between 1 and {MAX_MUTE_MINUTES} minutes (empty: until lifted)")
    until = timezone.now() + timedelta(minutes=minutes) if minutes else None
    with transaction.atomic():
        sanction = Sanction.objects.create(
            room=room, user=user, kind=Sanction.Kind.MUTE, until=until, reason=reason, created_by=actor.user
        )
        audit.record(actor, room, "mute", target_user_id=user.pk, detail=f"{minutes or 'indefinitely'} min {reason}".strip())
        _sanctioned(room, sanction, user, actor)
    return sanction


def user_ban(*, room: Room, actor: Singer, user: Any, reason: str = "") -> Sanction:
    """Ban a user from a room: their open sockets close with 4403 at once."""
    require_conductor(room, actor)
    _refuse_self_or_conductor_everywhere(actor, user)
    with transaction.atomic():
        sanction = Sanction.objects.create(
            room=room, user=user, kind=Sanction.Kind.BAN, reason=reason, created_by=actor.user
        )
        audit.record(actor, room, "ban", target_user_id=user.pk, detail=reason)
        _sanctioned(room, sanction, user, actor)
        broadcast.on_commit(room.pk, events.eject(user.pk, Close.FORBIDDEN, "you were banned from this room"))
    return sanction


def sanction_lift(*, room: Room, actor: Singer, user: Any, kind: str) -> int:
    """Lift a user's active mutes or bans in a room; returns how many."""
    require_conductor(room, actor)
    with transaction.atomic():
        lifted = Sanction.objects.filter(room=room, user=user, kind=kind, lifted_at__isnull=True).update(
            lifted_at=timezone.now()
        )
        if lifted:
            audit.record(actor, room, f"un{kind}", target_user_id=user.pk)
    return lifted


def _sanctioned(room: Room, sanction: Sanction, user: Any, actor: Singer) -> None:
    data = {
        "room": room.slug,
        "user": user.get_username(),
        "kind": sanction.kind,
        "until": sanction.until.isoformat().replace("+00:00", "Z") if sanction.until else None,
        "reason": sanction.reason,
        "by": actor.user.get_username() if actor.user is not None else None,
    }
    outward.tell(room, "member.sanctioned", data, signals.member_sanctioned, Sanction, sanction=sanction, user=user, actor=actor)


def _refuse_self_or_conductor_everywhere(actor: Singer, user: Any) -> None:
    if actor.user is not None and actor.user.pk == user.pk:
        raise Refusal(Code.INVALID, "you cannot moderate yourself")
    if user.is_active and user.has_perm(MODERATE_ANY_ROOM):
        # A mute or ban would not bind them anyway: they conduct every room.
        raise Refusal(Code.FORBIDDEN, "people who conduct every room cannot be muted or banned")

