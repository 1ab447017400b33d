"""Choir's tables: rooms, messages, memberships, sanctions, moderation actions, reactions, mentions and read markers.

Long because Django expects one app's models in one module, and the migrations name them there.
"""

from __future__ import annotations

from choir.conf import settings
from django.db import connection, models
from django.db.models import Q
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

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("room-detail", args=[self.slug])

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class MessageManager(models.Manager):
    COLUMNS = (
        "room_id", "seq", "author_id", "guest_key", "author_name", "body", "client_id", "sent_at",
        "reply_to_id", "mentions", "reactions", "rev",
    )

    def insert_returning_ids(self, messages: list[Message]) -> None:
        """INSERT new messages in one statement and set their ids.

        What bulk_create does, minus the ORM's per-call SQL compilation, which
        cost as much CPU as the database round trip on the posting path.
        RETURNING works on PostgreSQL and SQLite (3.35+) alike.
        """
        if not messages:
            return
        adapt = connection.ops.adapt_datetimefield_value
        adapt_json = connection.ops.adapt_json_value
        row = "(" + ", ".join(["%s"] * len(self.COLUMNS)) + ")"
        params: list = []
        for m in messages:
            params += [
                m.room_id, m.seq, m.author_id, m.guest_key, m.author_name, m.body, m.client_id, adapt(m.sent_at),
                m.reply_to_id, adapt_json(m.mentions, None), adapt_json(m.reactions, None), 0,
            ]
        table = self.model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(self.COLUMNS)}) VALUES {', '.join([row] * len(messages))} RETURNING id",
                params,
            )
            ids = [r[0] for r in cursor.fetchall()]
        for message, pk in zip(messages, ids):
            message.pk = pk
            message._state.adding = False
            message._state.db = connection.alias


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A guest has no user: this key (their session, or one connection) scopes
    # idempotent retries to them.
    guest_key = models.CharField(max_length=64, blank=True, default="")
    author_name = models.CharField(max_length=150)
    body = models.TextField()
    client_id = models.CharField(max_length=64, null=True, blank=True)
    sent_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Conversations (protocol v1.1). The parent's excerpt is read when a
    # message is shown, never copied, so an edit of the parent costs no
    # update of its replies.
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies", db_index=False,
        editable=False,
    )
    # Usernames mentioned, as shown in frames; Mention rows are what unread
    # counts use.
    mentions = models.JSONField(default=list, blank=True, editable=False)
    # {emoji: count}, kept under the room's row lock by each reaction change,
    # so frames and history pages cost no aggregate query.
    reactions = models.JSONField(default=dict, blank=True, editable=False)
    # The rev of this message's latest change (0: never changed).
    rev = models.PositiveBigIntegerField(default=0, editable=False)

    objects = MessageManager()

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_seq_unique_per_room"),
            models.UniqueConstraint(
                fields=["room", "author", "client_id"],
                condition=Q(author__isnull=False, client_id__isnull=False),
                name="message_client_id_unique_per_user",
            ),
            models.UniqueConstraint(
                fields=["room", "guest_key", "client_id"],
                condition=Q(author__isnull=True, client_id__isnull=False),
                name="message_client_id_unique_per_guest",
            ),
        ]
        indexes = [
            models.Index(fields=["sent_at"], name="message_sent_at"),
            # Retries are looked up by (room, client_id) before a batch is stored.
            models.Index(fields=["room", "client_id"], condition=Q(client_id__isnull=False), name="message_client_id"),
            # Resume and /changes read a room's changed messages in rev order.
            models.Index(fields=["room", "rev"], condition=Q(rev__gt=0), name="message_room_rev"),
            # Unread counts: the live messages after a marker, with their
            # authors in the index, so counting is an index-only range scan
            # on PostgreSQL rather than a visit to every row.
            models.Index(
                fields=["room", "seq"], include=["author"], condition=Q(deleted_at__isnull=True),
                name="message_live_seq",
            ),
            models.Index(fields=["reply_to"], condition=Q(reply_to__isnull=False), name="message_reply_to"),
        ]

    def __str__(self) -> str:
        return f"{self.room.slug}#{self.seq} {self.author_name}"


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


class Sanction(models.Model):
    """A mute or ban of one user in one room, for a time or for good."""

    class Kind(models.TextChoices):
        MUTE = "mute", "Mute"
        BAN = "ban", "Ban"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="sanctions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="choir_sanctions")
    kind = models.CharField(max_length=4, choices=Kind.choices)
    until = models.DateTimeField(null=True, blank=True, help_text="Empty = until lifted.")
    reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["room", "user", "kind"], name="sanction_lookup")]

    def __str__(self) -> str:
        return f"{self.kind} {self.user} in {self.room}"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.lifted_at is None and (self.until is None or self.until > now)


class ModerationAction(models.Model):
    """The audit log: who did what to which room, message or person, and when."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    room = models.ForeignKey(Room, null=True, on_delete=models.SET_NULL, related_name="moderation_actions")
    action = models.CharField(max_length=40)
    target_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    target_seq = models.PositiveBigIntegerField(null=True, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor} at {self.created_at:%Y-%m-%d %H:%M}"


class Reaction(models.Model):
    """One person's one emoji on one message (a guest, where guests may post, by guest_key)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reaction_rows")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="choir_reactions"
    )
    guest_key = models.CharField(max_length=64, blank=True, default="")
    emoji = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "user", "emoji"], condition=Q(user__isnull=False), name="reaction_unique"
            ),
            models.UniqueConstraint(
                fields=["message", "guest_key", "emoji"], condition=Q(user__isnull=True), name="reaction_unique_guest"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.emoji} by {self.user or self.guest_key} on {self.message}"


class Mention(models.Model):
    """A user named in a live message by someone else: what mention counts read.

    Rows are rewritten when the message is edited and removed when it is
    deleted, so counting never needs to look at the message itself.
    """

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="mention_rows")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="choir_mentions")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    seq = models.PositiveBigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="mention_unique")]
        indexes = [models.Index(fields=["user", "room", "seq"], name="mention_unread")]

    def __str__(self) -> str:
        return f"@{self.user} in {self.room.slug}#{self.seq}"


class ReadMarker(models.Model):
    """How far one user has read in one room; only ever moves forward."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="choir_read_markers")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="read_markers")
    seq = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "room"], name="read_marker_unique")]

    def __str__(self) -> str:
        return f"{self.user} read {self.room.slug} to {self.seq}"
