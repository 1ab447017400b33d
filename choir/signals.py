"""Django signals for other code in the project: sent once the change has committed.

Connect a receiver as with any Django signal:

    from django.dispatch import receiver
    from choir.signals import message_posted

    @receiver(message_posted)
    def on_post(sender, room, message, **kwargs): ...

Every signal is sent by choir.services after the transaction that made the
change commits (`transaction.on_commit`), so a receiver never sees a change
that rolls back, and a receiver that fails is logged and cannot undo it or
stop the others (`send_robust`). They are for reacting to changes; they are
not how rooms hear of them (that is choir.broadcast). The arguments of each
are in docs/signals.md.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import Signal

# sender=Message; room, message (the stored Message)
message_posted = Signal()
# sender=Message; room, message (its new state), actor (choir.access.Singer)
message_changed = Signal()
# sender=Message; room, message (deleted_at set, body empty), actor
message_deleted = Signal()
# sender=Sanction; room, sanction (kind "mute" or "ban", until, reason), user, actor
member_sanctioned = Signal()
# sender=Room; room, actor (Singer or None), reopened (False when created)
room_opened = Signal()
# sender=Room; room, actor, changed (names of the fields that changed)
room_changed = Signal()
# sender=Room; room, actor, reason
room_archived = Signal()


def send_on_commit(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send `signal` once the current transaction commits (at once outside one)."""
    if not signal.receivers:
        return  # nothing listening: the posting path pays nothing

    # send_robust logs a failing receiver (logger django.dispatch) and goes on.
    transaction.on_commit(lambda: signal.send_robust(sender, **kwargs))
