"""Admin for programs as clients: API tokens (bot accounts too) and webhooks.

Imported by choir/admin.py. Tokens are issued and revoked through
choir.services.tokens, so a revocation closes the token's sockets at once.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest

from choir.access import Singer, display_name
from choir.models import ApiToken
from choir.services import tokens as token_services


def _actor(request: HttpRequest) -> Singer:
    return Singer(user=request.user, name=display_name(request.user))


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "key", "read_only", "expires_at", "last_used_at", "revoked_at", "created_at"]
    list_filter = ["read_only", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "key", "user__username"]
    autocomplete_fields = ["user"]
    filter_horizontal = ["rooms"]
    actions = ["revoke_tokens"]

    def get_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return ["user", "name", "rooms", "read_only", "expires_at"]
        return ["user", "name", "key", "rooms", "read_only", "expires_at", "created_at", "created_by", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return []
        # A token's powers are fixed when issued: to change them, issue another.
        return ["user", "key", "rooms", "read_only", "expires_at", "created_at", "created_by", "last_used_at", "revoked_at"]

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # revoke instead: the row remembers who had what

    def save_model(self, request: HttpRequest, obj: ApiToken, form, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        row, secret = token_services.token_issue(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            actor=_actor(request),
            rooms=form.cleaned_data["rooms"],
            read_only=form.cleaned_data["read_only"],
            expires_at=form.cleaned_data["expires_at"],
        )
        obj.pk, obj.key, obj.digest = row.pk, row.key, row.digest
        obj._state.adding = False
        messages.warning(request, f"The token, shown only this once: {secret}")

    @admin.action(description="Revoke selected tokens (closes their sockets)")
    def revoke_tokens(self, request: HttpRequest, queryset) -> None:
        count = 0
        for row in queryset.filter(revoked_at__isnull=True):
            token_services.token_revoke(token=row, actor=_actor(request))
            count += 1
        self.message_user(request, f"Revoked {count} token(s).")
