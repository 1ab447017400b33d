"""`@name` mentions: found in a body, resolved to users once per batch."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.functions import Lower

# Django's usernames are letters, digits and @ . + - _; a mention starts at an
# @ that does not continue a word (so "ann@example.org" mentions nobody) and
# ends at the first character that cannot be in a username.
NAME_CHARS = r"[\w.@+-]"
MENTION = re.compile(rf"(?<!{NAME_CHARS})@({NAME_CHARS}{{1,150}})")
# "@ann." or "@ann," at the end of a sentence: if "ann." is nobody, try "ann".
TRAILING = ".@+-"


def candidates(body: str) -> list[str]:
    """Lower-cased names a body might mention, in order of appearance."""
    found: list[str] = []
    for match in MENTION.finditer(body):
        name = match.group(1).lower()
        for option in (name, name.rstrip(TRAILING)):
            if option and option not in found:
                found.append(option)
    return found


def resolve(bodies: Iterable[str]) -> tuple[list[list[str]], dict[str, int]]:
    """Each body's mentioned usernames (as spelled in the account), plus {username: user id}.

    One query for the whole batch, whatever its size.
    """
    bodies = list(bodies)
    per_body = [candidates(body) for body in bodies]
    wanted = {name for names in per_body for name in names}
    if not wanted:
        return [[] for _ in bodies], {}
    User = get_user_model()
    field = User.USERNAME_FIELD
    users: dict[str, tuple[str, int]] = {}
    for username, pk in (
        User.objects.annotate(folded=Lower(field)).filter(folded__in=wanted, is_active=True).values_list(field, "pk")
    ):
        users.setdefault(username.lower(), (username, pk))
    result: list[list[str]] = []
    for body in bodies:
        mentioned: list[str] = []
        for match in MENTION.finditer(body):
            name = match.group(1).lower()
            hit = users.get(name) or users.get(name.rstrip(TRAILING))
            if hit is not None and hit[0] not in mentioned:
                mentioned.append(hit[0])
        result.append(mentioned)
    return result, {username: pk for username, pk in users.values()}


def rows_for(message: Any, names: list[str], ids: dict[str, int]) -> list[Any]:
    """Mention rows for a stored message: the people it names, less its author."""
    from choir.models import Mention

    return [
        Mention(message_id=message.pk, user_id=ids[name], room_id=message.room_id, seq=message.seq)
        for name in names
        if ids[name] != message.author_id
    ]
