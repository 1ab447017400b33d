"""API tokens: issue and revoke. Revoking closes the token's sockets with 4401 on every process."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from django.db import transaction
from django.utils import timezone

from choir import broadcast, events, tokens
from choir.access import Singer
from choir.models import ApiToken, Room
from choir.protocol import Close, Code, Refusal
from choir.services import audit
from choir.services.authority import require_actor

NAME_MAX = 100


def token_issue(
    *,
    user: Any,
    name: str,
    actor: Singer,
    rooms: Iterable[Room] = (),
    read_only: bool = False,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Make a token for `user`; returns the row and the token, which is never stored.

    A person issues their own; issuing one for someone else (a bot account)
    needs `choir.add_apitoken`, which staff get in admin.
    """
    _require_owner_or(actor, user.pk, "choir.add_apitoken", "issue tokens for other people")
    name = " ".join((name or "").split())
    if not name or len(name) > NAME_MAX:
        raise Refusal(Code.INVALID, f"a token needs a name of 1 to {NAME_MAX} characters")
    if expires_at is not None and expires_at <= timezone.now():
        raise Refusal(Code.INVALID, "the expiry must be in the future")
    secret, key, digest = tokens.new_secret()
    with transaction.atomic():
        row = ApiToken.objects.create(
            user=user, name=name, key=key, digest=digest, read_only=read_only, expires_at=expires_at,
            created_by=actor.user,
        )
        rooms = list(rooms)
        if rooms:
            row.rooms.set(rooms)
        if actor.user is not None and actor.user.pk != user.pk:
            audit.record(actor, None, "token_issue", target_user_id=user.pk, detail=f"{key} {name}")
    return row, secret


def token_revoke(*, token: ApiToken, actor: Singer) -> ApiToken:
    """Revoke a token: refused from now on, and its open sockets close with 4401 everywhere.

    Its owner may; anyone else needs `choir.change_apitoken`.
    """
    _require_owner_or(actor, token.user_id, "choir.change_apitoken", "revoke other people's tokens")
    with transaction.atomic():
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        token.refresh_from_db(fields=["revoked_at"])
        if changed:
            if actor.user is not None and actor.user.pk != token.user_id:
                audit.record(actor, None, "token_revoke", target_user_id=token.user_id, detail=token.key)
            broadcast.on_commit_everywhere(events.token_revoked(token.pk, Close.UNAUTHORIZED, "this token was revoked"))
    return token


def _require_owner_or(actor: Singer, owner_id: int, perm: str, doing: str) -> None:
    require_actor(actor)
    if actor.user is not None and actor.user.pk == owner_id:
        return
    if not actor.has_perm(perm):
        raise Refusal(Code.FORBIDDEN, f"you need the {perm} permission to {doing}")
