"""Who is entering which room: what a socket handshake reads from the database.

Each runs on a database thread (`database_sync_to_async`), once per
handshake, and returns what the consumer needs to answer it: the room (None
when missing, or hidden from this caller), the person, what they may do there,
and their read marker.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from choir import tokens
from choir.access import Access, Singer, access_for, display_name, singer_for
from choir.models import Room
from choir.selectors import read_seq, room_by_slug

NO_ACCESS = Access(can_view=False, can_post=False, is_conductor=False, is_member=False, banned=False)


def enter(slug: str, user: Any, session: Any, requested_name: str | None) -> tuple[Room | None, Singer, Access, int | None]:
    """(room, singer, access, read marker) for a person with a session, or a guest."""
    # The session is read here, in a database thread: loading it may query.
    singer = singer_for(user, session, requested_name)
    room = room_by_slug(slug)
    if room is None:
        return None, singer, NO_ACCESS, None
    access = access_for(room, singer)
    return room, singer, access, read_seq(room, singer.user) if access.can_view else None


def enter_with_token(
    slug: str, raw: str
) -> tuple[Room | None, Singer, Access, int | None, tokens.Grant | None, str | None]:
    """Like `enter`, for a program with a token: (..., grant, why the token is refused)."""
    try:
        grant = tokens.authenticate(raw)
    except tokens.BadToken as exc:
        return None, singer_for(None, None), NO_ACCESS, None, None, str(exc)
    singer = Singer(user=grant.user, name=display_name(grant.user))
    room = room_by_slug(slug)
    if room is None or not grant.allows_room(room.pk):
        # A room outside the token's rooms is as hidden as a room that does not exist.
        return None, singer, NO_ACCESS, None, grant, None
    access = access_for(room, singer)
    if grant.read_only and access.can_post:
        access = dataclasses.replace(access, can_post=False, why_not_post="this token is read-only")
    return room, singer, access, read_seq(room, singer.user) if access.can_view else None, grant, None
