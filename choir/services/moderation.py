"""Conductors' and staff's powers over a room: redact, bulk delete, mute, ban, slow mode."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from choir import broadcast, events, signals
from choir.access import Singer, access_for
from choir.models import Message, Room, Sanction
from choir.protocol import Close, Code, Refusal
from choir.services import audit, outward
from choir.services.messages import message_delete, message_edit


REDACTED = "[redacted by a moderator]"


def message_redact(*, room: Room, actor: Singer, seq: int) -> Message:
    """Replace a message's text, keeping that it was there (moderators only)."""
    if not access_for(room, actor).is_conductor:
        raise Refusal(Code.FORBIDDEN, "only conductors may redact messages")
    return message_edit(room=room, actor=actor, seq=seq, body=REDACTED, moderator=True)


def messages_delete(*, messages: list[Message], actor: Singer) -> int:
    """Bulk delete (admin action); each deletion is broadcast to its room."""
    count = 0
    for message in messages:
        if message.deleted_at is None:
            message_delete(room=message.room, actor=actor, seq=message.seq, moderator=True)
            count += 1
    return count


def room_set_slow_mode(*, room: Room, actor: Singer, seconds: int) -> Room:
    _require_conductor(room, actor)
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
    _require_conductor(room, actor)
    _refuse_self_or_staff(actor, user)
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
    _require_conductor(room, actor)
    _refuse_self_or_staff(actor, user)
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
    _require_conductor(room, actor)
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


def _require_conductor(room: Room, actor: Singer) -> None:
    if not access_for(room, actor).is_conductor:
        raise Refusal(Code.FORBIDDEN, "only conductors and staff may moderate this room")


def _refuse_self_or_staff(actor: Singer, user: Any) -> None:
    if actor.user is not None and actor.user.pk == user.pk:
        raise Refusal(Code.INVALID, "you cannot moderate yourself")
    if user.is_staff:
        raise Refusal(Code.FORBIDDEN, "staff cannot be muted or banned")

