"""Reactions: one person's emoji on a message, toggled on and off."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Min

from choir import broadcast, events, protocol
from choir.access import Singer, access_for
from choir.models import Message, Reaction, Room
from choir.protocol import Code, Refusal
from choir.services.messages import locked_message

MAX_DISTINCT = 20  # distinct emoji on one message


@dataclass(frozen=True, slots=True)
class Reacted:
    seq: int
    rev: int  # the message's latest rev (unchanged when nothing changed)
    counts: dict[str, int]
    changed: bool
    frame: str  # the `reactions` frame: broadcast when changed, else for the sender alone


def may_react(room: Room, singer: Singer) -> str:
    """Why the singer may not react here ("" if they may).

    Whoever may post may react; in a stage room a listener may too, unless
    the room turned reactions off, as long as they could post were it an
    open room (so a mute, a ban or a guest in a members' room still stops them).
    """
    access = access_for(room, singer)
    if access.can_post:
        return ""
    if room.mode == Room.Mode.STAGE and access.can_view and room.is_open:
        if not room.reactions_enabled:
            return "reactions are turned off in this room"
        as_open = Room(**{f.attname: getattr(room, f.attname) for f in Room._meta.concrete_fields})
        as_open.mode = Room.Mode.OPEN
        return access_for(as_open, singer).why_not_post
    return access.why_not_post or "you may not react here"


def reaction_toggle(*, room: Room, actor: Singer, seq: int, emoji: str, on: bool) -> Reacted:
    """Add (on) or remove the actor's emoji on message `seq`; idempotent.

    Under the room's row lock (the rev's), so concurrent toggles on one
    message queue and the counts stored on the message stay exact; the
    unique constraint settles a twin that still slips in. A toggle that
    changes nothing gives its rev back and is not broadcast.
    """
    emoji = protocol.clean_emoji(emoji)
    why = may_react(room, actor)
    if why:
        raise Refusal(Code.FORBIDDEN, why)
    who = {"user": actor.user} if actor.user is not None else {"user": None, "guest_key": actor.guest_key}
    with transaction.atomic():
        message, rev = locked_message(room, seq)
        mine = Reaction.objects.filter(message=message, emoji=emoji, **who)
        if on:
            if emoji not in message.reactions and len(message.reactions) >= MAX_DISTINCT:
                raise Refusal(Code.INVALID, f"a message holds at most {MAX_DISTINCT} different reactions")
            try:
                with transaction.atomic():
                    Reaction.objects.create(message=message, emoji=emoji, **who)
                changed = True
            except IntegrityError:
                changed = False
        else:
            changed = mine.delete()[0] > 0
        if not changed:
            Room.objects.filter(pk=room.pk).update(last_rev=F("last_rev") - 1)  # still locked: no gap
            frame = protocol.encode(
                protocol.reactions_object(
                    room=room.slug, seq=seq, rev=message.rev, counts=message.reactions, emoji=emoji, on=on
                )
            )
            return Reacted(seq, message.rev, message.reactions, False, frame)
        counts = {
            row["emoji"]: row["n"]
            for row in Reaction.objects.filter(message=message)
            .values("emoji")
            .annotate(n=Count("id"), first=Min("id"))
            .order_by("first")
        }
        Message.objects.filter(pk=message.pk).update(reactions=counts, rev=rev)
        frame = protocol.encode(
            protocol.reactions_object(
                room=room.slug, seq=seq, rev=rev, counts=counts, actor=actor.name, emoji=emoji, on=on
            )
        )
        broadcast.on_commit(room.pk, events.change(rev, frame))
    return Reacted(seq, rev, counts, True, frame)
