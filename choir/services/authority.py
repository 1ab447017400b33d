"""Authority checks every service makes before it writes (check, then do).

The rules themselves live in choir.access (room roles, Django permissions,
SYSTEM); these helpers turn a "no" into the `Refusal` every caller reports.
"""

from __future__ import annotations

from typing import Any

from choir.access import Singer, may_conduct
from choir.models import Room
from choir.protocol import Code, Refusal


def require_actor(actor: Any) -> Singer:
    """A programming error, not a refusal: every change names who makes it."""
    if not isinstance(actor, Singer):
        raise TypeError("actor must be the acting Singer, or choir.services.SYSTEM for trusted code (never None)")
    return actor


def require_perm(actor: Singer, perm: str, doing: str) -> None:
    if not require_actor(actor).has_perm(perm):
        raise Refusal(Code.FORBIDDEN, f"you need the {perm} permission to {doing}")


def require_conductor(room: Room, actor: Singer) -> None:
    if not may_conduct(room, require_actor(actor)):
        raise Refusal(Code.FORBIDDEN, "only conductors of this room (or holders of choir.moderate_any_room) may moderate it")
