"""Rooms and who belongs to them; the row lock that numbers a room's messages and changes."""

from __future__ import annotations

from choir.conf import settings
from django.db import connection, models
from django.urls import reverse
from django.utils import timezone


class RoomQuerySet(models.QuerySet):
    def open(self) -> RoomQuerySet:
        return self.filter(status=Room.Status.OPEN)


class RoomManager(models.Manager.from_queryset(RoomQuerySet)):  # type: ignore[misc]
    def allocate_seqs(self, room_id: int, count: int = 1, *, now=None) -> dict:
        """Reserve `count` consecutive seqs in an open room.

        Must run inside a transaction: the UPDATE takes the row lock, so
        concurrent writers (threads or processes) queue here and seqs never
        repeat or skip; a rollback gives the seqs back. RETURNING keeps it to
        one round trip on PostgreSQL and SQLite alike, and hands back the
        room's rules as they are under the lock. Returns {"last_seq", "mode",
        "is_public", "guests_may_post", "slow_mode_seconds"}; raises
        DoesNotExist when the room is gone or archived.
        """
        table = self.model._meta.db_table
        columns = ["last_seq", "mode", "is_public", "guests_may_post", "slow_mode_seconds"]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET last_seq = last_seq + %s, last_message_at = %s "
                f"WHERE id = %s AND status = %s RETURNING {', '.join(columns)}",
                [count, connection.ops.adapt_datetimefield_value(now or timezone.now()), room_id, Room.Status.OPEN],
            )
            row = cursor.fetchone()
        if row is None:
            raise self.model.DoesNotExist(f"room {room_id} is not open")
        return _rules(columns, row)

    def allocate_seqs_many(self, counts: dict[int, int], *, now=None) -> dict[int, dict]:
        """`allocate_seqs` for several rooms ({room id: count}) in one round trip.

        A batch that spans many rooms would otherwise pay one UPDATE per room.
        On PostgreSQL one statement locks the rows in id order first (the
        FOR UPDATE subquery), so writers whose batches share rooms queue
        rather than deadlock, then bumps them all. Rooms that are gone or not
        open are left out of the result. SQLite locks the whole database for
        the transaction, and its statements cost no round trip: it goes room
        by room.
        """
        if connection.vendor != "postgresql" or len(counts) == 1:
            found = {}
            for room_id in sorted(counts):
                try:
                    found[room_id] = self.allocate_seqs(room_id, counts[room_id], now=now)
                except self.model.DoesNotExist:
                    pass
            return found
        table = self.model._meta.db_table
        columns = ["last_seq", "mode", "is_public", "guests_may_post", "slow_mode_seconds"]
        ids = sorted(counts)
        values = ", ".join(["(%s::bigint, %s::integer)"] * len(ids))
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS r SET last_seq = r.last_seq + v.n, last_message_at = %s "
                f"FROM (SELECT id FROM {table} WHERE id = ANY(%s) AND status = %s ORDER BY id FOR UPDATE) AS locked, "
                f"(VALUES {values}) AS v(id, n) "
                f"WHERE r.id = locked.id AND r.id = v.id "
                f"RETURNING r.id, {', '.join('r.' + c for c in columns)}",
                [
                    connection.ops.adapt_datetimefield_value(now or timezone.now()),
                    ids,
                    Room.Status.OPEN,
                    *(value for room_id in ids for value in (room_id, counts[room_id])),
                ],
            )
            rows = cursor.fetchall()
        return {row[0]: _rules(columns, row[1:]) for row in rows}


    def allocate_rev(self, room_id: int) -> int:
        """Take the room's next rev; must run inside a transaction.

        The UPDATE takes the same row lock as `allocate_seqs`, so changes in
        one room are serialised and numbered without gaps; a rollback gives
        the rev back. Works on archived rooms too: moderators still edit there.
        """
        table = self.model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET last_rev = last_rev + 1 WHERE id = %s RETURNING last_rev", [room_id])
            row = cursor.fetchone()
        if row is None:
            raise self.model.DoesNotExist(f"room {room_id} is gone")
        return row[0]


def _rules(columns: list[str], row: tuple) -> dict:
    fresh = dict(zip(columns, row))
    fresh["is_public"] = bool(fresh["is_public"])
    fresh["guests_may_post"] = bool(fresh["guests_may_post"])
    return fresh


class Room(models.Model):
    class Mode(models.TextChoices):
        OPEN = "open", "Open: every member may sing"
        STAGE = "stage", "Stage: only conductors sing, everyone else listens"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ARCHIVED = "archived", "Archived"

    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=120)
    topic = models.CharField(max_length=300, blank=True)
    is_public = models.BooleanField(
        default=True, help_text="Public rooms are visible to everyone; private ones to members only."
    )
    guests_may_post = models.BooleanField(
        default=False, help_text="Visitors who are not signed in may post (public rooms only)."
    )
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.OPEN)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    slow_mode_seconds = models.PositiveIntegerField(
        default=0, help_text="At most one message per this many seconds per person (0 = off)."
    )
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Delete history older than this (empty = global default)."
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_seq = models.PositiveBigIntegerField(default=0, editable=False)
    # The second gap-free counter (protocol v1.1): every change to an existing
    # message takes the next rev, under the same row lock as seqs.
    last_rev = models.PositiveBigIntegerField(default=0, editable=False)
    reactions_enabled = models.BooleanField(
        default=True, help_text="In a stage room, listeners may react to messages (those who may post always may)."
    )
    last_message_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = RoomManager()

    class Meta:
        ordering = ["title"]
        # Granted to users or groups in the admin (superusers hold them all);
        # checked as "choir.<codename>" in choir.access.
        permissions = [
            ("moderate_any_room", "Conduct every room: moderate, see private rooms"),
            ("announce", "Announce to rooms"),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("room-detail", args=[self.slug])

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        CONDUCTOR = "conductor", "Conductor (moderator)"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="choir_memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.room} ({self.role})"
