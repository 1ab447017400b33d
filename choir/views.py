"""Site pages: the room list, a room, picking a guest name, signing up."""

from __future__ import annotations

from datetime import timedelta

from choir.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from choir import presence
from choir.access import SESSION_GUEST_NAME, Access, access_for, clean_guest_name, singer_for
from choir.models import Room
from choir.numbers import NotAWholeNumber, whole_number
from choir.selectors import (
    add_mine,
    messages_around,
    messages_before,
    read_seq,
    rooms_with_latest,
    visible_rooms,
    with_unread,
)


def visible_room_or_404(request: HttpRequest, slug: str) -> tuple[Room, Access]:
    """The room if this person may see it; 404 otherwise, so private rooms stay hidden."""
    room = Room.objects.filter(slug=slug).first()
    access = access_for(room, singer_for(request.user, request.session)) if room is not None else None
    if room is None or access is None or not access.can_view:
        raise Http404("No such room")  # one answer for missing and not-yours
    return room, access


def room_list(request: HttpRequest) -> HttpResponse:
    rooms_seen = rooms_with_latest(visible_rooms(request.user))
    if request.user.is_authenticated:
        rooms_seen = with_unread(rooms_seen, request.user)  # the badges: unread and mentions since the marker
    rooms = list(rooms_seen.order_by("-status", "title"))
    online = presence.online_counts([room.pk for room in rooms])
    minute_ago = timezone.now() - timedelta(minutes=1)
    for room in rooms:
        room.online_count = online.get(room.pk, 0)
        room.active_just_now = room.last_message_at is not None and room.last_message_at > minute_ago
    return render(request, "choir/room_list.html", {"rooms": rooms})


def room_detail(request: HttpRequest, slug: str) -> HttpResponse:
    room, access = visible_room_or_404(request, slug)
    singer = singer_for(request.user, request.session)
    # Read before the history: a change after this rev is replayed to the
    # page's socket (?rev=), one the history already shows is harmless.
    rev = room.last_rev
    # ?before= pages back through history without JavaScript; ?at= is a
    # message's permalink: the page around it, the message marked.
    try:
        before = whole_number(request.GET.get("before"), "before")
        at = whole_number(request.GET.get("at"), "at", minimum=1)
    except NotAWholeNumber as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    if before is not None:
        at = None
    if at is not None:
        history = messages_around(room, at, settings.CHOIR_PAGE_MESSAGES)
    else:
        history = messages_before(room, before, settings.CHOIR_PAGE_MESSAGES)
    signed_in = request.user.is_authenticated
    if signed_in:
        add_mine(history, request.user)
    first_seq = history[0]["seq"] if history else (before or 0)
    return render(
        request,
        "choir/room_detail.html",
        {
            "room": room,
            "access": access,
            "singer": singer,
            "history": history,
            "before": before,
            "at": at,
            "rev": rev,
            # Mentions name users, so only a signed-in reader is ever mentioned.
            "me_user": singer.name if signed_in else "",
            "read_seq": read_seq(room, request.user) if signed_in else None,
            "first_seq": first_seq,
            # Seqs start at 1 and deleted messages keep theirs, so anything
            # above 1 means there is older history.
            "has_older": first_seq > 1,
            "last_seq": history[-1]["seq"] if history else max((before or 1) - 1, 0),
            "page_size": settings.CHOIR_PAGE_MESSAGES,
            "needs_guest_name": singer.is_guest and access.can_post and not request.session.get(SESSION_GUEST_NAME),
            "max_body": settings.CHOIR_MAX_BODY_CHARS,
            **_conductor_panel(room, access),
        },
    )


def _conductor_panel(room: Room, access: Access) -> dict[str, object]:
    """The moderation form's target, when this person conducts the room."""
    if not access.is_conductor:
        return {"show_conductor_panel": False}
    try:
        url = reverse("room-moderate", args=[room.slug])
    except NoReverseMatch:  # the moderation endpoint is not installed
        return {"show_conductor_panel": False}
    return {"show_conductor_panel": True, "moderate_url": url}


@require_POST
def guest_name(request: HttpRequest, slug: str) -> HttpResponse:
    room, _ = visible_room_or_404(request, slug)
    name = clean_guest_name(request.POST.get("name"))
    if name is None:
        flash.error(request, "Pick a name of 1 to 40 printable characters.")
    else:
        request.session[SESSION_GUEST_NAME] = name
    return redirect(room)


def signup(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = UserCreationForm(request.POST)
        if form.is_valid():
            user = form.save()
            # Named: django-axes' backend comes first in AUTHENTICATION_BACKENDS and makes no sessions.
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            target = request.POST.get("next") or request.GET.get("next") or ""
            if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
                return redirect(target)
            return redirect("room-list")
    else:
        form = UserCreationForm()
    return render(request, "registration/signup.html", {"form": form, "next": request.GET.get("next", "")})
