"""Who is singing, and what they may do in a room: one set of rules for the
page, the history API, the socket and replay alike.

Authority comes from two places and nowhere else: the person's role in the
room (a `Membership`), and Django permissions, which an operator grants to a
user or a group (superusers hold them all):

- `choir.moderate_any_room`: conduct every room (moderate, see private rooms);
- `choir.announce`: post announcements (admin, `choir_say`);
- the model permissions Django makes (`choir.change_room`, ...) for managing
  rooms and memberships.

`is_staff` only lets someone into the admin site; by itself it grants nothing
here. Trusted code with nobody behind it (management commands, setup) acts as
`SYSTEM`, which holds every permission; `None` is never an actor.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from choir.models import Membership, Room, Sanction

GUEST_NAME_MAX = 40
SESSION_GUEST_NAME = "choir_guest_name"

MODERATE_ANY_ROOM = "choir.moderate_any_room"
ANNOUNCE = "choir.announce"
DELETE_OLD_MESSAGES = "choir.delete_message"  # retention (prune): Django's own delete permission
SYSTEM_NAME = "Choir"


@dataclass(frozen=True, slots=True)
class Singer:
    """The person behind a request or socket: a user, or a guest."""

    user: Any | None
    name: str
    guest_key: str = ""
    is_system: bool = False  # only SYSTEM: trusted code acting for nobody in particular

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None else None

    @property
    def is_guest(self) -> bool:
        return self.user is None and not self.is_system

    def has_perm(self, perm: str) -> bool:
        """Django's answer for a user (superusers hold every permission); SYSTEM holds all, guests none."""
        if self.is_system:
            return True
        return bool(self.user is not None and self.user.has_perm(perm))


# Management commands, setup and other trusted code with no person behind it
# pass this as the actor: it holds every permission and conducts every room.
SYSTEM = Singer(user=None, name=SYSTEM_NAME, guest_key="system", is_system=True)


def display_name(user: Any) -> str:
    return (user.get_full_name() or user.get_username())[:150]


def clean_guest_name(raw: str | None) -> str | None:
    """A guest's chosen name, or None if unusable."""
    if not raw:
        return None
    name = " ".join(raw.split())[:GUEST_NAME_MAX]
    if not name or not name.isprintable():
        return None
    return name


def singer_for(user: Any | None, session: Any | None, requested_name: str | None = None) -> Singer:
    """Build a Singer from Django's user and session (scope or request)."""
    if user is not None and user.is_authenticated:
        return Singer(user=user, name=display_name(user))
    session_key = getattr(session, "session_key", None) if session is not None else None
    # Without a session (a bare client) idempotent retries are scoped to this
    # one connection: there is nothing else to recognise the guest by.
    guest_key = f"s:{session_key}" if session_key else f"c:{secrets.token_hex(8)}"
    chosen = None
    if session is not None:
        try:
            chosen = session.get(SESSION_GUEST_NAME)
        except Exception:  # a session that cannot be read is treated as none
            chosen = None
    name = clean_guest_name(chosen) or clean_guest_name(requested_name) or f"guest-{guest_key[2:8]}"
    return Singer(user=None, name=f"{name} (guest)" if not name.startswith("guest-") else name, guest_key=guest_key)


@dataclass(frozen=True, slots=True)
class Access:
    can_view: bool
    can_post: bool
    is_conductor: bool
    is_member: bool
    banned: bool
    why_not_post: str = ""
    muted_until: datetime | None = None
    # The one "may act" rule: take part at all (edit one's own messages,
    # react, type). Viewing, an open room and no mute; posting needs more.
    can_act: bool = False
    conducts_everywhere: bool = False  # holds choir.moderate_any_room
    why_not_act: str = ""

    @property
    def can_react(self) -> bool:
        return self.can_act


def active_sanctions(room: Room, user: Any) -> dict[str, Sanction]:
    now = timezone.now()
    found: dict[str, Sanction] = {}
    for sanction in Sanction.objects.filter(room=room, user=user, lifted_at__isnull=True).order_by("created_at"):
        if sanction.is_active(now):
            found[sanction.kind] = sanction
    return found


@dataclass(frozen=True, slots=True)
class Standing:
    """A person's role and sanctions in one room: what the rules need from the database."""

    role: str | None = None
    sanctions: dict[str, Sanction] | None = None
    conducts_everywhere: bool = False  # choir.moderate_any_room, or SYSTEM


def standing_in(room: Room, singer: Singer) -> Standing:
    """Load role, active sanctions and permissions (none for a guest; Django
    caches a user's permissions on the user object after the first check)."""
    if singer.user is None:
        return Standing(conducts_everywhere=singer.is_system)
    role = Membership.objects.filter(room=room, user=singer.user).values_list("role", flat=True).first()
    return Standing(
        role=role,
        sanctions=active_sanctions(room, singer.user),
        conducts_everywhere=singer.has_perm(MODERATE_ANY_ROOM),
    )


def access_for(room: Room, singer: Singer, standing: Standing | None = None) -> Access:
    """Evaluate the room's rules for one singer (loads their standing unless given)."""
    if standing is None:
        standing = standing_in(room, singer)
    role = standing.role
    sanctions = standing.sanctions or {}
    everywhere = standing.conducts_everywhere
    is_member = role is not None
    is_conductor = everywhere or role == Membership.Role.CONDUCTOR
    banned = Sanction.Kind.BAN in sanctions and not everywhere
    can_view = not banned and (room.is_public or is_member or everywhere)

    why_not_act = ""
    muted_until = None
    if not can_view:
        why_not_act = "you may not enter this room"
    elif not room.is_open:
        why_not_act = "this room is closed"
    elif Sanction.Kind.MUTE in sanctions and not is_conductor:
        muted_until = sanctions[Sanction.Kind.MUTE].until
        why_not_act = "you are muted in this room" + (f" until {muted_until:%Y-%m-%d %H:%M} UTC" if muted_until else "")
    why = why_not_act
    if not why:
        if room.mode == Room.Mode.STAGE and not is_conductor:
            why = "this is a stage room: only conductors sing here"
        elif singer.is_guest and not (room.guests_may_post and room.is_public):
            why = "guests may not post in this room: sign in to sing"
    return Access(
        can_view=can_view,
        can_post=not why,
        is_conductor=is_conductor and can_view,
        is_member=is_member,
        banned=banned,
        why_not_post=why,
        muted_until=muted_until,
        can_act=not why_not_act,
        conducts_everywhere=everywhere,
        why_not_act=why_not_act,
    )


def may_conduct(room: Room, actor: Singer) -> bool:
    """Whether the actor may moderate this room: its conductors, holders of
    choir.moderate_any_room, and SYSTEM."""
    return actor.is_system or access_for(room, actor).is_conductor
