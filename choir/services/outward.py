"""What a change tells the world beyond the room: Django signals and webhooks.

Called by the other services inside the change's transaction: the webhook
outbox rows are written in it, the signals are sent once it commits.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

from choir import signals, webhooks
from choir.models import Message, Room
from choir.selectors import message_frame


def room_data(room: Room) -> dict[str, Any]:
    return {
        "slug": room.slug,
        "title": room.title,
        "topic": room.topic,
        "mode": room.mode,
        "public": room.is_public,
        "guests_may_post": room.guests_may_post,
        "open": room.is_open,
        "slow_mode_seconds": room.slow_mode_seconds,
    }


def message_data(message: Message, room: Room) -> dict[str, Any]:
    data = message_frame(message, room.slug)
    del data["type"]
    return data


def tell(
    room: Room, event_type: str, data: dict[str, Any], signal: Signal, sender: Any, **signal_kwargs: Any
) -> None:
    webhooks.record([webhooks.Event(room.pk, event_type, data)])
    signals.send_on_commit(signal, sender, room=room, **signal_kwargs)


def messages_posted(stored: list[Message]) -> None:
    """For a batch of new messages (possibly in several rooms), in seq order."""
    if webhooks.wanted():
        webhooks.record(
            [webhooks.Event(m.room_id, "message.posted", message_data(m, m.room)) for m in stored]
        )
    if signals.message_posted.receivers:
        for message in stored:
            signals.send_on_commit(signals.message_posted, Message, room=message.room, message=message)
