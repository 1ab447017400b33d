"""Read markers: how far each signed-in person has read in each room."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from choir import broadcast, events, protocol
from choir.access import Singer
from choir.models import ReadMarker, Room
from choir.protocol import Code, Refusal


def read_mark(*, room: Room, reader: Singer, seq: int, origin: str | None = None) -> int | None:
    """Move the reader's marker forward to `seq` (never back, never past the room's last seq).

    Returns the new marker, or None when it did not move. The reader's other
    sockets in the room, on every process, hear of it; `origin` (the
    sending socket's conn_id) is skipped.
    """
    if reader.user is None:
        raise Refusal(Code.FORBIDDEN, "sign in to keep a read marker")
    latest = Room.objects.filter(pk=room.pk).values_list("last_seq", flat=True).first() or 0
    seq = min(seq, latest)
    if seq <= 0:
        return None
    now = timezone.now()
    with transaction.atomic():
        moved = ReadMarker.objects.filter(room=room, user=reader.user, seq__lt=seq).update(seq=seq, updated_at=now)
        if not moved and not ReadMarker.objects.filter(room=room, user=reader.user).exists():
            try:
                with transaction.atomic():
                    ReadMarker.objects.create(room=room, user=reader.user, seq=seq, updated_at=now)
                moved = 1
            except IntegrityError:  # another socket of theirs made it first
                moved = ReadMarker.objects.filter(room=room, user=reader.user, seq__lt=seq).update(
                    seq=seq, updated_at=now
                )
        if not moved:
            return None
        broadcast.on_commit(room.pk, events.read(reader.user.pk, origin, protocol.read_frame(room=room.slug, seq=seq)))
    return seq
