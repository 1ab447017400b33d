"""Choir's pages and APIs; a project mounts them with `path("", include("choir.urls"))`.

Include them before `admin.site.urls`: the conductor's desk lives at
admin/desk/, beside the admin rather than inside it.
"""

from django.contrib import admin
from django.urls import path

from choir import api, desk, health, metrics_view, moderation_views, token_views, views

urlpatterns = [
    path("", views.room_list, name="room-list"),
    path("rooms/<slug:slug>/", views.room_detail, name="room-detail"),
    path("rooms/<slug:slug>/guest-name", views.guest_name, name="guest-name"),
    path("rooms/<slug:slug>/moderate", moderation_views.moderate, name="room-moderate"),
    path("api/rooms/", api.rooms, name="api-rooms"),
    path("api/rooms/<slug:slug>/messages", api.room_messages, name="api-room-messages"),
    path("api/rooms/<slug:slug>/messages/<int:seq>", api.room_message, name="api-room-message"),
    path("api/rooms/<slug:slug>/changes", api.room_changes, name="api-room-changes"),
    path("api/rooms/<slug:slug>/search", api.room_search, name="api-room-search"),
    path("accounts/tokens/", token_views.token_list, name="tokens"),
    path("accounts/tokens/<int:pk>/revoke", token_views.token_revoke, name="token-revoke"),
    path("admin/desk/", admin.site.admin_view(desk.desk_view), name="choir-desk"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view.metrics, name="metrics"),
]
