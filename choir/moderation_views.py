"""Conductors moderate from the room page: mute, ban, slow mode.

The services check that the actor conducts the room (its role, or
choir.moderate_any_room), so a crafted POST from anyone else is refused
there (403 here). Bad input, numbers included, comes back as a flash message.
"""

from __future__ import annotations

from django.contrib import messages as flash
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from choir import services
from choir.access import singer_for
from choir.models import Room, Sanction
from choir.protocol import Code, Refusal
from choir.views import visible_room_or_404


MAX_DIGITS = 9  # more than any mute (ten years in minutes) or slow mode needs


def _whole(raw: str | None, default: int | None = None) -> int | None:
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    # ASCII digits only: str.isdigit() also takes '²' and '①', which int() refuses.
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_DIGITS:
        raise Refusal(Code.INVALID, f"numbers must be whole, not negative, and at most {MAX_DIGITS} digits")
    return int(text)


def _target(request: HttpRequest):
    username = (request.POST.get("username") or "").strip()
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise Refusal(Code.NOT_FOUND, f"no user called {username!r}")
    return user


def _apply(request: HttpRequest, room: Room) -> str:
    actor = singer_for(request.user, request.session)
    action = request.POST.get("action", "")
    reason = (request.POST.get("reason") or "")[:300]
    if action == "mute":
        user = _target(request)
        minutes = _whole(request.POST.get("minutes"), 10)
        services.user_mute(room=room, actor=actor, user=user, minutes=minutes, reason=reason)
        return f"{user.get_username()} is muted" + (f" for {minutes} min" if minutes else "")
    if action == "ban":
        user = _target(request)
        services.user_ban(room=room, actor=actor, user=user, reason=reason)
        return f"{user.get_username()} is banned from this room"
    if action in {"unmute", "unban"}:
        user = _target(request)
        kind = Sanction.Kind.MUTE if action == "unmute" else Sanction.Kind.BAN
        lifted = services.sanction_lift(room=room, actor=actor, user=user, kind=kind)
        return f"lifted {lifted} {kind}(s) of {user.get_username()}"
    if action == "slow_mode":
        seconds = _whole(request.POST.get("seconds"), 0) or 0
        services.room_set_slow_mode(room=room, actor=actor, seconds=seconds)
        return f"slow mode {'off' if not seconds else f'one message per {seconds} s'}"
    raise Refusal(Code.INVALID, f"unknown moderation action {action[:30]!r}")


@login_required
@require_POST
def moderate(request: HttpRequest, slug: str) -> HttpResponse:
    room, access = visible_room_or_404(request, slug)
    if not access.is_conductor:
        return HttpResponseForbidden("Only conductors and staff may moderate this room.")
    try:
        flash.success(request, _apply(request, room))
    except Refusal as refusal:
        if refusal.code == Code.FORBIDDEN:
            return HttpResponseForbidden(refusal.detail)
        flash.error(request, refusal.detail)
    return redirect(room)
