"""The audit log of moderation and room changes, written inside the change's transaction."""

from __future__ import annotations

from choir.access import Singer
from choir.models import ModerationAction, Room


def record(
    actor: Singer | None,
    room: Room | None,
    action: str,
    *,
    target_user_id: int | None = None,
    target_seq: int | None = None,
    detail: str = "",
) -> None:
    ModerationAction.objects.create(
        actor=actor.user if actor is not None else None,
        room=room,
        action=action,
        target_user_id=target_user_id,
        target_seq=target_seq,
        detail=detail[:500],
    )

