"""Django admin for rooms, messages, memberships and moderation.

Every change that people in a room should see goes through choir.services,
so it is stored and broadcast like any socket message. Every action declares
the permission it needs (Django hides it from anyone without), and the
service checks the same permission again; destructive bulk actions first
show a page listing what they will change, like Django's delete_selected.
Long because it is one declarative ModelAdmin per model, which Django's admin
expects side by side; tokens and webhooks live in choir/admin_programs.py.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from choir import presence, services
from choir.access import ANNOUNCE, MODERATE_ANY_ROOM, may_conduct
from choir.admin_support import confirmed, staff_singer
from choir.models import Membership, Message, ModerationAction, Reaction, ReadMarker, Room, Sanction
from choir.protocol import Refusal


class ModerateAnyRoom:
    """`permissions=["moderate"]` on an action: for holders of choir.moderate_any_room."""

    def has_moderate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MODERATE_ANY_ROOM)


def _each(modeladmin: admin.ModelAdmin, request: HttpRequest, items, do) -> int:
    """Apply `do` to each item; a refusal is reported and the rest go on."""
    done = 0
    for item in items:
        try:
            do(item)
            done += 1
        except Refusal as refusal:
            modeladmin.message_user(request, f"{item}: {refusal.detail}", level=messages.ERROR)
    return done


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]
    fields = ["user", "role", "joined_at"]
    readonly_fields = ["joined_at"]


class AnnounceForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Announcement")


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = [
        "title", "slug", "mode", "is_public", "guests_may_post", "status",
        "message_count", "last_message_at", "online_now",
    ]
    list_filter = ["status", "mode", "is_public", "guests_may_post"]
    search_fields = ["title", "slug", "topic"]
    prepopulated_fields = {"slug": ["title"]}
    inlines = [MembershipInline]
    actions = ["archive_rooms", "reopen_rooms", "announce"]
    readonly_fields = ["last_seq", "last_message_at", "last_rev"]

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).annotate(message_total=Count("messages"))

    @admin.display(description="messages", ordering="message_total")
    def message_count(self, room: Room) -> int:
        return room.message_total

    @admin.display(description="online now")
    def online_now(self, room: Room) -> int:
        return presence.online_counts([room.pk]).get(room.pk, 0)

    def save_model(self, request: HttpRequest, obj: Room, form, change: bool) -> None:
        # Through the service, so open sockets learn of the change (and an
        # archive closes them with 4410 on every process).
        services.room_save(room=obj, actor=staff_singer(request), changed=list(form.changed_data) if change else [])

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        actor = staff_singer(request)
        for membership in formset.save(commit=False):
            services.membership_set(room=form.instance, actor=actor, user=membership.user, role=membership.role)
        for membership in formset.deleted_objects:
            services.membership_remove(room=form.instance, actor=actor, user=membership.user)

    def delete_model(self, request: HttpRequest, obj: Room) -> None:
        services.room_delete(room=obj, actor=staff_singer(request))

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for room in queryset:
            services.room_delete(room=room, actor=staff_singer(request))

    def has_announce_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ANNOUNCE)

    @admin.action(description="Archive (close) selected rooms: open sockets get 4410", permissions=["change"])
    def archive_rooms(self, request: HttpRequest, queryset) -> HttpResponse | None:
        asking = confirmed(
            self, request, queryset, action="archive_rooms",
            question="Archive these rooms?",
            consequence="Everyone connected is disconnected (4410) and nobody can post until a room is reopened.",
        )
        if asking is not None:
            return asking
        actor = staff_singer(request)
        done = _each(self, request, list(queryset), lambda room: services.room_archive(room=room, actor=actor))
        self.message_user(request, f"Archived {done} room(s).")
        return None

    @admin.action(description="Reopen selected rooms", permissions=["change"])
    def reopen_rooms(self, request: HttpRequest, queryset) -> None:
        actor = staff_singer(request)
        done = _each(self, request, list(queryset), lambda room: services.room_reopen(room=room, actor=actor))
        self.message_user(request, f"Reopened {done} room(s).")

    @admin.action(description="Announce to selected rooms", permissions=["announce"])
    def announce(self, request: HttpRequest, queryset) -> HttpResponse | None:
        form = AnnounceForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            sent = 0
            for room in queryset:
                try:
                    services.announce(room=room, text=form.cleaned_data["text"], actor=staff_singer(request))
                    sent += 1
                except Refusal as refusal:
                    self.message_user(request, f"{room}: {refusal.detail}", level=messages.ERROR)
            self.message_user(request, f"Announced to {sent} room(s).")
            return None
        return TemplateResponse(
            request,
            "admin/choir/room/announce.html",
            {
                **self.admin_site.each_context(request),
                "title": "Announce to rooms",
                "rooms": queryset,
                "form": form,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )


@admin.register(Message)
class MessageAdmin(ModerateAnyRoom, admin.ModelAdmin):
    list_display = ["room", "seq", "author_name", "body", "sent_at", "edited_at", "deleted_at"]
    list_filter = ["room", "sent_at", ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["body", "author_name", "room__slug", "room__title"]
    list_select_related = ["room"]
    readonly_fields = ["room", "seq", "author", "guest_key", "author_name", "client_id", "sent_at", "edited_at", "deleted_at"]
    actions = ["delete_selected_messages", "redact_selected_messages"]
    # Conversations (v1.1): what it answers, who it names, its reactions and replies.
    # Read-only fields rather than inlines: an inline formset would make every
    # save of the form (and its existing tests) carry management data.
    readonly_fields += ["answers", "replies", "mentions", "who_reacted", "rev"]

    @admin.display(description="reply to")
    def answers(self, message: Message) -> str:
        parent = message.reply_to
        if parent is None:
            return "-"
        if parent.deleted_at is not None:
            return f"#{parent.seq} (deleted)"
        return f"#{parent.seq} {parent.author_name}: {parent.body[:80]}"

    @admin.display(description="replies")
    def replies(self, message: Message) -> str:
        rows = message.replies.order_by("seq").values_list("pk", "seq", "author_name", "body")[:50]
        if not rows:
            return "-"
        return format_html_join(
            mark_safe("<br>"), '<a href="{}">#{} {}</a>: {}',
            ((reverse("admin:choir_message_change", args=[pk]), seq, name, body[:80]) for pk, seq, name, body in rows),
        )

    @admin.display(description="reactions")
    def who_reacted(self, message: Message) -> str:
        rows = message.reaction_rows.select_related("user").order_by("emoji", "created_at")[:200]
        if not rows:
            return "-"
        return format_html_join(
            mark_safe("<br>"), "{} {}", ((r.emoji, r.user.get_username() if r.user else r.guest_key) for r in rows)
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages are posted through rooms (or the announce action)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # deletion keeps the seq: use the delete action

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # Editing someone's words is moderation: the service asks the same.
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or may_conduct(obj.room, staff_singer(request))

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

    @admin.action(description="Delete selected messages (they keep their seq)", permissions=["moderate"])
    def delete_selected_messages(self, request: HttpRequest, queryset) -> HttpResponse | None:
        asking = confirmed(
            self, request, queryset.select_related("room"), action="delete_selected_messages",
            question="Delete these messages?",
            consequence="Their text is gone for good and everyone connected sees them deleted; they keep their numbers.",
        )
        if asking is not None:
            return asking
        try:
            count = services.messages_delete(messages=list(queryset.select_related("room")), actor=staff_singer(request))
        except Refusal as refusal:
            self.message_user(request, refusal.detail, level=messages.ERROR)
            return None
        self.message_user(request, f"Deleted {count} message(s).")
        return None

    @admin.action(description="Redact selected messages", permissions=["moderate"])
    def redact_selected_messages(self, request: HttpRequest, queryset) -> HttpResponse | None:
        asking = confirmed(
            self, request, queryset.select_related("room"), action="redact_selected_messages",
            question="Redact these messages?",
            consequence=f"Their text is replaced by “{services.REDACTED}” for everyone, now and in history.",
        )
        if asking is not None:
            return asking
        actor = staff_singer(request)
        live = [message for message in queryset.select_related("room") if message.deleted_at is None]
        count = _each(
            self, request, live,
            lambda message: services.message_redact(room=message.room, actor=actor, seq=message.seq),
        )
        self.message_user(request, f"Redacted {count} message(s).")
        return None


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["room", "user", "role", "joined_at"]
    list_filter = ["role", "room"]
    search_fields = ["user__username", "room__slug"]
    autocomplete_fields = ["user"]

    def save_model(self, request: HttpRequest, obj: Membership, form, change: bool) -> None:
        saved = services.membership_set(room=obj.room, actor=staff_singer(request), user=obj.user, role=obj.role)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        services.membership_remove(room=obj.room, actor=staff_singer(request), user=obj.user)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for membership in queryset.select_related("room", "user"):
            self.delete_model(request, membership)


class SanctionForm(forms.ModelForm):
    minutes = forms.IntegerField(
        required=False, min_value=1, help_text="Mutes: how long. Empty = until lifted. Bans last until lifted."
    )

    class Meta:
        model = Sanction
        fields = ["room", "user", "kind", "reason"]


@admin.register(Sanction)
class SanctionAdmin(ModerateAnyRoom, admin.ModelAdmin):
    form = SanctionForm
    list_display = ["room", "user", "kind", "until", "lifted_at", "created_by", "created_at"]
    list_filter = ["kind", "room", ("lifted_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__username", "room__slug", "reason"]
    autocomplete_fields = ["user"]
    actions = ["lift"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Any room may be picked in the form: the service would refuse the rest.
        return super().has_add_permission(request) and self.has_moderate_permission(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the record stays: lift it instead

    def get_actions(self, request: HttpRequest):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request: HttpRequest, obj: Sanction, form, change: bool) -> None:
        actor = staff_singer(request)
        try:
            if obj.kind == Sanction.Kind.BAN:
                created = services.user_ban(room=obj.room, actor=actor, user=obj.user, reason=obj.reason)
            else:
                minutes = form.cleaned_data.get("minutes")
                created = services.user_mute(room=obj.room, actor=actor, user=obj.user, minutes=minutes, reason=obj.reason)
        except Refusal as refusal:
            self.message_user(request, refusal.detail, level=messages.ERROR)
            return
        obj.pk = created.pk

    @admin.action(description="Lift selected mutes and bans", permissions=["moderate"])
    def lift(self, request: HttpRequest, queryset) -> HttpResponse | None:
        asking = confirmed(
            self, request, queryset.select_related("room", "user"), action="lift",
            question="Lift these mutes and bans?",
            consequence="Each person may post (or enter) again at once; a lifted sanction cannot be put back, only made anew.",
        )
        if asking is not None:
            return asking
        actor = staff_singer(request)
        lifted = 0
        for sanction in queryset.filter(lifted_at__isnull=True).select_related("room", "user"):
            try:
                lifted += services.sanction_lift(room=sanction.room, actor=actor, user=sanction.user, kind=sanction.kind)
            except Refusal as refusal:
                self.message_user(request, f"{sanction}: {refusal.detail}", level=messages.ERROR)
        self.message_user(request, f"Lifted {lifted} sanction(s).")
        return None


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


@admin.register(Reaction)
class ReactionAdmin(admin.ModelAdmin):
    """Who reacted with what; toggled only by people in the room."""

    list_display = ["emoji", "message", "user", "guest_key", "created_at"]
    list_filter = ["message__room"]
    search_fields = ["emoji", "user__username", "message__room__slug"]
    list_select_related = ["message__room", "user"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ReadMarker)
class ReadMarkerAdmin(admin.ModelAdmin):
    """How far each person has read each room (moved only by their `read` frames)."""

    list_display = ["user", "room", "seq", "room_seq", "updated_at"]
    list_filter = ["room"]
    search_fields = ["user__username", "room__slug"]
    list_select_related = ["room", "user"]

    @admin.display(description="room's latest seq")
    def room_seq(self, marker: ReadMarker) -> int:
        return marker.room.last_seq

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


from choir import admin_programs  # noqa: E402,F401  (registers tokens and webhooks)
