"""Webhooks out: the outbox written with each change, and its delivery.

`record` is called by choir.services inside the change's own transaction, so
an event is stored if and only if its change is. `deliver_pass` (run in a
loop by `manage.py choir_webhooks`, which `manage.py serve` starts) sends
each endpoint's events room by room in outbox order, which within a room is
seq order: posts to a room are stored under its row lock, so a later post's
outbox rows have higher ids. A row that fails is retried with exponential
backoff and holds back the rest of its room for that endpoint, so a receiver
that was down catches up in order. Each delivery carries a fixed id, so a
receiver drops a repeat (a timeout after the receiver got it means a resend).

Signature: header `Choir-Signature: t=<unix seconds>,v1=<hex>`, where hex is
HMAC-SHA256(secret, f"{t}.{body}"); see docs/webhooks.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Min
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from choir.conf import settings
from choir.models import WebhookDelivery, WebhookEndpoint

log = logging.getLogger("choir.webhooks")

USER_AGENT = "Choir-Webhooks/1"


@dataclass(frozen=True, slots=True)
class Event:
    room_id: int | None
    type: str  # one of WebhookEndpoint.EVENT_TYPES
    data: dict[str, Any]


# Recording ------------------------------------------------------------------------

_endpoints: tuple[float, list[tuple[int, int | None, list[str]]]] | None = None


def _active_endpoints() -> list[tuple[int, int | None, list[str]]]:
    """(id, room id, event types) of active endpoints, re-read at most every CHOIR_WEBHOOK_ENDPOINT_CACHE s.

    Posting would otherwise pay a query per transaction to learn, nearly
    always, that there are none. Saving an endpoint clears this process's
    copy at once; other processes see it within the cache time.
    """
    global _endpoints
    ttl = settings.CHOIR_WEBHOOK_ENDPOINT_CACHE
    now = time.monotonic()
    if _endpoints is None or now - _endpoints[0] > ttl:
        rows = list(WebhookEndpoint.objects.filter(active=True).values_list("id", "room_id", "event_types"))
        _endpoints = (now, rows)
    return _endpoints[1]


def forget_endpoints(**kwargs: Any) -> None:
    global _endpoints
    _endpoints = None


post_save.connect(forget_endpoints, sender=WebhookEndpoint, dispatch_uid="choir-webhook-endpoints-saved")
post_delete.connect(forget_endpoints, sender=WebhookEndpoint, dispatch_uid="choir-webhook-endpoints-deleted")


def wanted() -> bool:
    """Whether any endpoint is active: if not, callers need not build events."""
    return bool(_active_endpoints())


def record(events: list[Event]) -> None:
    """Write the outbox rows for these events: call inside the change's transaction."""
    endpoints = _active_endpoints()
    if not endpoints or not events:
        return
    now = timezone.now()
    rows = []
    for event in events:
        payload = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"), default=str)
        for endpoint_id, room_id, types in endpoints:
            if (room_id is None or room_id == event.room_id) and (not types or event.type in types):
                rows.append(WebhookDelivery(
                    delivery_id=uuid.uuid4(), endpoint_id=endpoint_id, room_key=event.room_id or 0,
                    event_type=event.type, payload=payload, created_at=now, next_attempt_at=now,
                ))
    if rows:
        WebhookDelivery.objects.bulk_create(rows)


# Signing ----------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Choir-Signature header's value for one body."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does: check the signature, and that it is recent (replays)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def body_of(row: WebhookDelivery) -> bytes:
    """The delivered JSON: the same bytes on every attempt."""
    envelope = {
        "id": str(row.delivery_id),
        "type": row.event_type,
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
        "data": json.loads(row.payload),
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


# Delivering -----------------------------------------------------------------------------


def backoff(attempts: int) -> float:
    """Seconds before attempt `attempts + 1`: doubling from the base, capped, with a little jitter."""
    base = settings.CHOIR_WEBHOOK_RETRY_BASE
    delay = min(base * (2 ** max(attempts - 1, 0)), settings.CHOIR_WEBHOOK_RETRY_MAX)
    return delay * random.uniform(0.9, 1.1)


def send(row: WebhookDelivery) -> tuple[int | None, str]:
    """POST one delivery: (HTTP status or None, error text; empty when delivered)."""
    body = body_of(row)
    request = urllib.request.Request(
        row.endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Choir-Delivery": str(row.delivery_id),
            "Choir-Event": row.event_type,
            "Choir-Signature": signature(row.endpoint.secret, int(time.time()), body),
        },
    )
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=settings.CHOIR_WEBHOOK_TIMEOUT) as response:
            response.read(65_536)
            return response.status, ""
    except urllib.error.HTTPError as answer:
        return answer.code, f"HTTP {answer.code}"
    except Exception as exc:  # refused, timed out, bad URL: all mean "try again later"
        return None, f"{type(exc).__name__}: {exc}"[:500]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect is a failure to fix in the endpoint's URL, not a place to send signed events.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _lanes() -> list[tuple[int, int]]:
    """(endpoint id, room key) of every lane with something to deliver, oldest first."""
    heads = (
        WebhookDelivery.objects.filter(delivered_at__isnull=True, endpoint__active=True)
        .values("endpoint_id", "room_key")
        .annotate(first=Min("id"))
        .order_by("first")
    )
    return [(head["endpoint_id"], head["room_key"]) for head in heads]


def _attempt_head(endpoint_id: int, room_key: int) -> bool | None:
    """Deliver the oldest undelivered row of one lane if it is due.

    True: delivered; False: failed (the lane waits for its backoff); None:
    nothing due, or another worker holds the row. On PostgreSQL the row is
    locked for the attempt (FOR UPDATE SKIP LOCKED), so workers never send a
    lane's rows at once or out of order.
    """
    locking = connection.features.has_select_for_update_skip_locked
    with transaction.atomic(durable=False) if locking else _nothing():
        pending = WebhookDelivery.objects.filter(endpoint_id=endpoint_id, room_key=room_key, delivered_at__isnull=True)
        head = pending.order_by("id").values_list("id", "next_attempt_at").first()
        if head is None or head[1] > timezone.now():
            return None
        rows = WebhookDelivery.objects.select_related("endpoint").filter(id=head[0], delivered_at__isnull=True)
        if locking:
            rows = rows.select_for_update(skip_locked=True, of=("self",))
        row = rows.first()
        if row is None or not row.endpoint.active:
            return None
        status, error = send(row)
        now = timezone.now()
        row.attempts += 1
        row.last_status = status
        row.last_error = error
        if not error:
            row.delivered_at = now
        else:
            row.next_attempt_at = now + timedelta(seconds=backoff(row.attempts))
            log.warning(
                "webhook %s to %s failed (attempt %s): %s", row.delivery_id, row.endpoint.url, row.attempts, error
            )
        row.save(update_fields=["attempts", "last_status", "last_error", "delivered_at", "next_attempt_at"])
        return not error


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def deliver_pass(*, per_lane: int = 100) -> int:
    """Deliver what is due in every lane, up to `per_lane` rows each; returns how many were delivered."""
    delivered = 0
    for endpoint_id, room_key in _lanes():
        for _ in range(per_lane):
            outcome = _attempt_head(endpoint_id, room_key)
            if not outcome:
                break
            delivered += 1
    return delivered


def replay_from(row: WebhookDelivery) -> int:
    """Send an endpoint's events again from this one on, in order, with their delivery ids; returns how many."""
    return WebhookDelivery.objects.filter(endpoint_id=row.endpoint_id, id__gte=row.id).update(
        delivered_at=None, attempts=0, next_attempt_at=timezone.now(), last_error="", last_status=None
    )
