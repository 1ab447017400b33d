"""Admin for programs as clients: API tokens (bot accounts too) and webhooks.

Imported by choir/admin.py. Tokens are issued and revoked through
choir.services.tokens, so a revocation closes the token's sockets at once.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from choir import webhooks
from choir.admin_support import confirmed, staff_singer
from choir.models import ApiToken, WebhookDelivery, WebhookEndpoint
from choir.services import tokens as token_services


ISSUED = ["user", "key", "rooms", "read_only", "expires_at", "created_at", "created_by", "last_used_at", "revoked_at"]


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
        return ["name", *ISSUED]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return []
        # A token's powers are fixed when issued: to change them, issue another.
        return ISSUED

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # revoke instead: the row remembers who had what

    def save_model(self, request: HttpRequest, obj: ApiToken, form, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        row, secret = token_services.token_issue(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            actor=staff_singer(request),
            rooms=form.cleaned_data["rooms"],
            read_only=form.cleaned_data["read_only"],
            expires_at=form.cleaned_data["expires_at"],
        )
        obj.pk, obj.key, obj.digest = row.pk, row.key, row.digest
        obj._state.adding = False
        messages.warning(request, f"The token, shown only this once: {secret}")

    @admin.action(description="Revoke selected tokens (closes their sockets)", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset) -> HttpResponse | None:
        asking = confirmed(
            self, request, queryset, action="revoke_tokens",
            question="Revoke these tokens?",
            consequence="Programs using them are refused from now on, and their open sockets close with 4401.",
        )
        if asking is not None:
            return asking
        count = 0
        for row in queryset.filter(revoked_at__isnull=True):
            token_services.token_revoke(token=row, actor=staff_singer(request))
            count += 1
        self.message_user(request, f"Revoked {count} token(s).")
        return None


class RecentDeliveries(admin.TabularInline):
    """The latest deliveries of an endpoint, failures first to the eye (see the list for all)."""

    model = WebhookDelivery
    extra = 0
    max_num = 0
    can_delete = False
    fields = readonly_fields = [
        "id", "event_type", "room_key", "created_at", "state", "attempts", "last_status", "last_error",
    ]
    ordering = ["-id"]
    verbose_name_plural = "recent deliveries (the 20 latest)"

    def get_queryset(self, request: HttpRequest):
        queryset = super().get_queryset(request)
        latest = list(queryset.order_by("-id").values_list("id", flat=True)[:20])
        return queryset.filter(id__in=latest)

    @admin.display(description="state")
    def state(self, row: WebhookDelivery) -> str:
        return delivery_state(row)


def delivery_state(row: WebhookDelivery) -> str:
    if row.delivered_at is not None:
        return "delivered"
    return "failing" if row.attempts else "pending"


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["__str__", "url", "room", "active", "pending", "failing", "last_delivered"]
    list_filter = ["active"]
    search_fields = ["url", "description"]
    inlines = [RecentDeliveries]
    fields = ["url", "description", "secret", "room", "event_types", "active", "created_at"]
    readonly_fields = ["created_at"]

    def get_queryset(self, request: HttpRequest):
        undelivered = Q(deliveries__delivered_at__isnull=True)
        return super().get_queryset(request).annotate(
            pending_total=Count("deliveries", filter=undelivered),
            failing_total=Count("deliveries", filter=undelivered & Q(deliveries__attempts__gt=0)),
            last_delivered_at=Max("deliveries__delivered_at"),
        )

    @admin.display(description="waiting", ordering="pending_total")
    def pending(self, endpoint: WebhookEndpoint) -> int:
        return endpoint.pending_total

    @admin.display(description="failing", ordering="failing_total")
    def failing(self, endpoint: WebhookEndpoint):
        count = endpoint.failing_total
        return format_html('<strong style="color:#b00">{}</strong>', count) if count else 0

    @admin.display(description="last delivered", ordering="last_delivered_at")
    def last_delivered(self, endpoint: WebhookEndpoint):
        return endpoint.last_delivered_at

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "url":
            kwargs["assume_scheme"] = "https"  # a URL typed without one is sent over TLS
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "event_types" and field is not None:
            field.help_text = "A JSON list, e.g. [\"message.posted\"]; [] for every type: " + ", ".join(
                WebhookEndpoint.EVENT_TYPES
            )
        return field

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form, change: bool) -> None:
        unknown = [t for t in obj.event_types or [] if t not in WebhookEndpoint.EVENT_TYPES]
        if unknown:
            messages.warning(request, f"Unknown event types, never sent: {', '.join(map(str, unknown))}")
        super().save_model(request, obj, form, change)


class DeliveryState(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("delivered", "delivered"), ("pending", "waiting"), ("failing", "failing")]

    def queryset(self, request, queryset):
        if self.value() == "delivered":
            return queryset.filter(delivered_at__isnull=False)
        if self.value() == "pending":
            return queryset.filter(delivered_at__isnull=True)
        if self.value() == "failing":
            return queryset.filter(delivered_at__isnull=True, attempts__gt=0)
        return queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id", "endpoint", "event_type", "room_key", "created_at", "state",
        "attempts", "last_status", "last_error", "next_attempt_at", "delivered_at",
    ]
    list_filter = [DeliveryState, "endpoint", "event_type"]
    search_fields = ["delivery_id"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["replay_from_here"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="state")
    def state(self, row: WebhookDelivery) -> str:
        return delivery_state(row)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # Replaying re-sends an endpoint's events: whoever may change endpoints may.
        return request.user.has_perm("choir.change_webhookendpoint")

    @admin.action(description="Replay the endpoint's events from this one on (in order)", permissions=["replay"])
    def replay_from_here(self, request: HttpRequest, queryset) -> None:
        # From the earliest selected per endpoint: everything after it goes again, in order.
        starts = {}
        for row in queryset.order_by("id"):
            starts.setdefault(row.endpoint_id, row)
        total = sum(webhooks.replay_from(row) for row in starts.values())
        self.message_user(request, f"{total} deliveries will be sent again, in order.")
