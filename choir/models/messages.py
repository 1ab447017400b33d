"""Messages, and what hangs off them: reactions, mentions, and each reader's marker."""

from __future__ import annotations

from choir.conf import settings
from django.db import connection, models
from django.db.models import Q
from django.utils import timezone

from choir.models.rooms import Room


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
