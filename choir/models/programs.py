"""What programs use: API tokens, and webhook endpoints with their outbox."""

from __future__ import annotations

from choir.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from choir.models.rooms import Room


class ApiToken(models.Model):
    """A credential a program presents for one user (a person or a bot account).

    Only a SHA-256 digest of the secret is stored: the token itself is shown
    once, when issued. `key` is its public part, used to look the row up and
    shown in lists so people can tell their tokens apart.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="choir_tokens")
    name = models.CharField(max_length=100)
    key = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    rooms = models.ManyToManyField(
        Room, blank=True, related_name="+", help_text="Only these rooms (empty = every room the user may see)."
    )
    read_only = models.BooleanField(default=False, help_text="May read and follow rooms, never post or change.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty = never expires.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.key}…) for {self.user}"

    def is_live(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class WebhookEndpoint(models.Model):
    """A URL that receives Choir's events, signed with its own secret."""

    EVENT_TYPES = [
        "message.posted", "message.changed", "message.deleted",
        "member.sanctioned", "room.opened", "room.changed", "room.archived",
    ]

    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=128, help_text="Signs every delivery (HMAC-SHA256); give the receiver the same.")
    room = models.ForeignKey(
        Room, null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="Empty = every room."
    )
    event_types = models.JSONField(default=list, blank=True, help_text="A list of event types; empty = every type.")
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return self.description or self.url

    def wants(self, room_id: int | None, event_type: str) -> bool:
        return (self.room_id is None or self.room_id == room_id) and (
            not self.event_types or event_type in self.event_types
        )


class WebhookDelivery(models.Model):
    """The outbox: one event for one endpoint, written in the change's own transaction.

    Rows of one endpoint and room (a `lane`) are delivered in id order, which
    is the order their changes committed in that room; a row that fails holds
    back the rest of its lane until it succeeds.
    """

    delivery_id = models.UUIDField(unique=True, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    room_key = models.BigIntegerField(default=0, help_text="The room's id (0 for none): the ordering lane.")
    event_type = models.CharField(max_length=40)
    payload = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["endpoint", "room_key", "id"], condition=Q(delivered_at__isnull=True), name="webhook_pending"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint} ({self.delivery_id})"
