"""Site pages: the room list, a room, picking a guest name, signing up."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from choir import presence
from choir.access import SESSION_GUEST_NAME, Access, access_for, clean_guest_name, singer_for
from choir.models import Room
from choir.selectors import messages_before, visible_rooms


def visible_room_or_404(request: HttpRequest, slug: str) -> tuple[Room, Access]:
    """The room if this person may see it; 404 otherwise, so private rooms stay hidden."""
    room = get_object_or_404(Room, slug=slug)
    access = access_for(room, singer_for(request.user, request.session))
    if not access.can_view:
        raise Http404("No such room")
    return room, access


def room_list(request: HttpRequest) -> HttpResponse:
    rooms = list(visible_rooms(request.user).order_by("-status", "title"))
    online = presence.online_counts([room.pk for room in rooms])
    for room in rooms:
        room.online_count = online.get(room.pk, 0)
    return render(request, "choir/room_list.html", {"rooms": rooms})


def room_detail(request: HttpRequest, slug: str) -> HttpResponse:
    room, access = visible_room_or_404(request, slug)
    singer = singer_for(request.user, request.session)
    history = messages_before(room, None, settings.CHOIR_PAGE_MESSAGES)
    return render(
        request,
        "choir/room_detail.html",
        {
            "room": room,
            "access": access,
            "singer": singer,
            "history": history,
            "last_seq": history[-1]["seq"] if history else 0,
            "needs_guest_name": singer.is_guest and access.can_post and not request.session.get(SESSION_GUEST_NAME),
            "max_body": settings.CHOIR_MAX_BODY_CHARS,
        },
    )


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
            login(request, user)
            return redirect(request.GET.get("next") or "room-list")
    else:
        form = UserCreationForm()
    return render(request, "registration/signup.html", {"form": form})
