"""The conductor's desk: the live system at a glance, for staff, in admin.

Per room: who is online now (the presence store every process writes), how
many messages per minute (from the database, over CHOIR_DESK_WINDOW_MINUTES),
and the last refusals (choir.logs.recent_refusals). Served at /admin/desk/
behind `admin.site.admin_view`, so only active staff get past the login page.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, field

from choir.conf import settings
from django.contrib import admin
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from prometheus_client import multiprocess

from choir import metrics
from choir.logs import recent_refusals
from choir.models import Message, Room

log = logging.getLogger("choir.desk")


@dataclass
class RoomRow:
    room: Room
    online: list[str] = field(default_factory=list)
    last_minute: int = 0
    in_window: int = 0
    per_minute: float = 0.0


def online_names(room_ids: list[int]) -> dict[int, list[str]]:
    """Who is online per room, as the presence store has it (choir/presence.py)."""
    names: dict[int, set[str]] = {room_id: set() for room_id in room_ids}
    if not room_ids:
        return {}
    if settings.CHOIR_REDIS_URLS:
        import redis

        prefix = settings.CHOIR_REDIS_PREFIX
        now = time.time()
        clients = [redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) for url in settings.CHOIR_REDIS_URLS]
        try:
            for room_id in room_ids:
                members = clients[room_id % len(clients)].zrangebyscore(f"{prefix}:presence:{room_id}", now, "+inf")
                names[room_id] = {member.decode().split("|", 1)[1] for member in members}
        except Exception:
            log.warning("presence unavailable for the desk", exc_info=True)
        finally:
            for client in clients:
                client.close()
    else:
        from choir.hub import _hubs

        for hub in list(_hubs.values()):
            rooms = getattr(hub.presence, "rooms", {})
            for room_id in room_ids:
                names[room_id] |= set(rooms.get(room_id, ()))
    return {room_id: sorted(found, key=str.casefold) for room_id, found in names.items()}


def room_rows(now: dt.datetime | None = None) -> list[RoomRow]:
    now = now or timezone.now()
    window = settings.CHOIR_DESK_WINDOW_MINUTES
    rooms = list(Room.objects.open().order_by("slug"))
    ids = [room.pk for room in rooms]
    recent = Message.objects.filter(room_id__in=ids)
    in_window = dict(
        recent.filter(sent_at__gte=now - dt.timedelta(minutes=window)).values_list("room").annotate(n=Count("id"))
    )
    last_minute = dict(recent.filter(sent_at__gte=now - dt.timedelta(minutes=1)).values_list("room").annotate(n=Count("id")))
    online = online_names(ids)
    rows = [
        RoomRow(
            room=room,
            online=online.get(room.pk, []),
            last_minute=last_minute.get(room.pk, 0),
            in_window=in_window.get(room.pk, 0),
            per_minute=round(in_window.get(room.pk, 0) / window, 1),
        )
        for room in rooms
    ]
    rows.sort(key=lambda row: (-len(row.online), -row.in_window, row.room.slug))
    return rows


def sockets_by_process() -> dict[str, int]:
    """Open sockets per server process, from the metrics every worker writes."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    families = multiprocess.MultiProcessCollector(None, path=path).collect() if path else metrics.OPEN_SOCKETS.collect()
    found: dict[str, int] = {}
    for family in families:
        if family.name != "choir_open_sockets":
            continue
        for sample in family.samples:
            found[sample.labels.get("pid", str(os.getpid()))] = int(sample.value)
    return dict(sorted(found.items()))


def desk_view(request: HttpRequest) -> HttpResponse:
    refusals = [
        {**entry, "at": dt.datetime.fromtimestamp(entry["at"], dt.timezone.utc)} for entry in recent_refusals.latest(20)
    ]
    processes = sockets_by_process()
    context = {
        **admin.site.each_context(request),
        "title": "The conductor's desk",
        "rows": room_rows(),
        "window": settings.CHOIR_DESK_WINDOW_MINUTES,
        "refusals": refusals,
        "processes": processes,
        "open_sockets": sum(processes.values()),
    }
    return TemplateResponse(request, "admin/choir/desk.html", context)
