"""Sanctions (mutes, bans) and the audit log of moderation."""

from __future__ import annotations

from choir.conf import settings
from django.db import models
from django.utils import timezone

from choir.models.rooms import Room


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
