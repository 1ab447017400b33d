"""API tokens: what a presented token is worth.

A token reads `choir_<key>_<secret>`. The key is public (it finds the row);
only the SHA-256 of the whole token is stored, so a leaked database does not
leak usable tokens. The secret has 256 bits of entropy, so a plain hash is
enough: a slow password hash would only slow every request down.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable
from urllib.parse import parse_qs

from django.db.models import Q
from django.utils import timezone

from choir.models import ApiToken

PREFIX = "choir_"
LAST_USED_EVERY = timedelta(minutes=1)  # at most one write per token per minute


class BadToken(Exception):
    """The token is malformed, unknown, expired or revoked (HTTP 401, close 4401)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What a live token allows, read once when it is presented."""

    token_id: int
    user: Any
    read_only: bool
    room_ids: frozenset[int] | None  # None = every room the user may see

    def allows_room(self, room_id: int) -> bool:
        return self.room_ids is None or room_id in self.room_ids


def new_secret() -> tuple[str, str, str]:
    """(token, key, digest) for a freshly issued token."""
    key = secrets.token_hex(6)
    token = f"{PREFIX}{key}_{secrets.token_urlsafe(32)}"
    return token, key, digest(token)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The bearer token of an ASGI scope's headers, if any ('' when the header is empty)."""
    for name, value in headers:
        if name == b"authorization":
            return bearer(value.decode("latin-1"))
    return None


def from_query(query_string: bytes) -> str | None:
    values = parse_qs(query_string.decode("latin-1")).get("token")
    return values[0] if values else None


def bearer(header: str | None) -> str | None:
    """The token in an Authorization header; None without one.

    Another scheme (Basic, from a proxy's password protection) is not ours
    and is ignored, so the request goes on as the session or a guest.
    """
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def authenticate(token: str) -> Grant:
    """The grant of a live token, or BadToken. Runs a query: call off the event loop."""
    if not token.startswith(PREFIX) or len(token) > 200:
        raise BadToken("malformed token")
    key = token[len(PREFIX):].split("_", 1)[0]
    row = ApiToken.objects.select_related("user").filter(key=key).first()
    if row is None or not hmac.compare_digest(row.digest, digest(token)):
        raise BadToken("unknown token")
    now = timezone.now()
    if row.revoked_at is not None:
        raise BadToken("this token was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise BadToken("this token has expired")
    if not row.user.is_active:
        raise BadToken("this token's account is disabled")
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
        # Conditional, so a burst of requests across processes writes once.
        ApiToken.objects.filter(pk=row.pk).exclude(last_used_at__gt=now - LAST_USED_EVERY).update(last_used_at=now)
    room_ids = frozenset(row.rooms.values_list("id", flat=True))
    return Grant(token_id=row.pk, user=row.user, read_only=row.read_only, room_ids=room_ids or None)


def dead_among(token_ids: set[int]) -> dict[int, str]:
    """Which of these tokens may no longer be used, and why (for the hub's periodic check)."""
    now = timezone.now()
    rows = ApiToken.objects.filter(pk__in=token_ids).filter(
        Q(revoked_at__isnull=False) | Q(expires_at__lte=now) | Q(user__is_active=False)
    )
    dead = {}
    for pk, revoked_at, expires_at in rows.values_list("pk", "revoked_at", "expires_at"):
        if revoked_at is not None:
            dead[pk] = "this token was revoked"
        elif expires_at is not None and expires_at <= now:
            dead[pk] = "this token has expired"
        else:
            dead[pk] = "this token's account is disabled"
    gone = token_ids - set(ApiToken.objects.filter(pk__in=token_ids).values_list("pk", flat=True))
    dead.update({pk: "this token was deleted" for pk in gone})
    return dead
