"""Django admin for rooms, messages, memberships and moderation.

Every change that people in a room should see goes through choir.services,
so it is stored and broadcast like any socket message.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest

from choir import services
from choir.access import Singer, display_name
from choir.models import Membership, Message, ModerationAction, Room, Sanction
from choir.protocol import Refusal


def staff_singer(request: HttpRequest) -> Singer:
    return Singer(user=request.user, name=display_name(request.user))


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["title", "slug", "mode", "is_public", "guests_may_post", "status", "last_seq", "last_message_at"]
    list_filter = ["status", "mode", "is_public", "guests_may_post"]
    search_fields = ["title", "slug", "topic"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [MembershipInline]
    actions = ["archive_rooms", "reopen_rooms"]

    @admin.action(description="Archive (close) selected rooms: open sockets get 4410")
    def archive_rooms(self, request: HttpRequest, queryset) -> None:
        for room in queryset:
            services.room_archive(room=room, actor=staff_singer(request))
        self.message_user(request, f"Archived {queryset.count()} room(s).")

    @admin.action(description="Reopen selected rooms")
    def reopen_rooms(self, request: HttpRequest, queryset) -> None:
        for room in queryset:
            services.room_reopen(room=room, actor=staff_singer(request))
        self.message_user(request, f"Reopened {queryset.count()} room(s).")


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["room", "seq", "author_name", "body", "sent_at", "edited_at", "deleted_at"]
    list_filter = ["room", "sent_at", ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["body", "author_name", "room__slug", "room__title"]
    list_select_related = ["room"]
    readonly_fields = ["room", "seq", "author", "guest_key", "author_name", "client_id", "sent_at", "edited_at", "deleted_at"]
    actions = ["delete_selected_messages", "redact_selected_messages"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages are posted through rooms (or the announce action)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # deletion keeps the seq: use the delete action

    def get_actions(self, request: HttpRequest):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request: HttpRequest, obj: Message, form, change: bool) -> None:
        if change and "body" in form.changed_data:
            try:
                services.message_edit(
                    room=obj.room, actor=staff_singer(request), seq=obj.seq, body=obj.body, moderator=True
                )
            except Refusal as refusal:
                self.message_user(request, refusal.detail, level=messages.ERROR)

    @admin.action(description="Delete selected messages (they keep their seq)")
    def delete_selected_messages(self, request: HttpRequest, queryset) -> None:
        count = services.messages_delete(messages=list(queryset.select_related("room")), actor=staff_singer(request))
        self.message_user(request, f"Deleted {count} message(s).")

    @admin.action(description="Redact selected messages")
    def redact_selected_messages(self, request: HttpRequest, queryset) -> None:
        count = 0
        for message in queryset.select_related("room"):
            if message.deleted_at is None:
                services.message_edit(
                    room=message.room, actor=staff_singer(request), seq=message.seq, body=services.REDACTED, moderator=True
                )
                count += 1
        self.message_user(request, f"Redacted {count} message(s).")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["room", "user", "role", "joined_at"]
    list_filter = ["role", "room"]
    search_fields = ["user__username", "room__slug"]
    autocomplete_fields = ["user"]


@admin.register(Sanction)
class SanctionAdmin(admin.ModelAdmin):
    list_display = ["room", "user", "kind", "until", "lifted_at", "created_by", "created_at"]
    list_filter = ["kind", "room"]
    search_fields = ["user__username", "room__slug", "reason"]


@admin.register(ModerationAction)
class ModerationActionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "action", "room", "target_user", "target_seq", "detail"]
    list_filter = ["action", "room"]
    search_fields = ["detail", "actor__username", "target_user__username"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
