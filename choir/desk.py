"""The conductor's desk: the live system at a glance, for staff, in admin.

Per room: who is online now (choir.presence.online, from the store every process writes), how
many messages per minute (from the database, over CHOIR_DESK_WINDOW_MINUTES),
and the last refusals (choir.logs.recent_refusals). Served at /admin/desk/
behind `admin.site.admin_view`, so only active staff get past the login page.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field

from choir.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from prometheus_client import multiprocess

from choir import metrics, presence, selectors
from choir.logs import recent_refusals
from choir.models import Room

log = logging.getLogger("choir.desk")


@dataclass
class RoomRow:
    room: Room
    online: list[str] = field(default_factory=list)
    last_minute: int = 0
    in_window: int = 0
    per_minute: float = 0.0


def room_rows(now: dt.datetime | None = None) -> list[RoomRow]:
    now = now or timezone.now()
    window = settings.CHOIR_DESK_WINDOW_MINUTES
    rooms = selectors.open_rooms()
    ids = [room.pk for room in rooms]
    in_window = selectors.messages_per_room_since(ids, now - dt.timedelta(minutes=window))
    last_minute = selectors.messages_per_room_since(ids, now - dt.timedelta(minutes=1))
    online = presence.online(ids)
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
