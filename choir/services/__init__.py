"""Every change to Choir's state: store it, then broadcast it once committed.

The consumer, the views, the admin and the management commands all call these
functions; nothing else writes rooms or messages or talks to the channel layer.
Each raises `protocol.Refusal` when the change is not allowed, so every caller
reports refusals the same way. One module per noun:

- `messages`: post (one, or a batch from the socket writer), edit, delete, prune
- `moderation`: redact, bulk delete, mute, ban, lift, slow mode
- `rooms`: create, save, archive, reopen, delete; memberships
- `announcements`: posts from admin, commands and other Django code
- `audit`: the moderation log, written in the change's own transaction
- `reactions`: toggle a person's emoji on a message
- `reads`: move a person's read marker in a room
"""

from __future__ import annotations

from choir.services.announcements import announce
from choir.services.messages import (
    SYSTEM_NAME,
    Draft,
    Outcome,
    Posted,
    message_delete,
    message_edit,
    message_post,
    messages_post,
    messages_post_many,
    messages_prune,
)
from choir.services.moderation import (
    REDACTED,
    message_redact,
    messages_delete,
    room_set_slow_mode,
    sanction_lift,
    user_ban,
    user_mute,
)
from choir.services.reactions import Reacted, may_react, reaction_toggle
from choir.services.reads import read_mark
from choir.services.rooms import (
    membership_remove,
    membership_set,
    room_archive,
    room_create,
    room_delete,
    room_ensure_lobby,
    room_reopen,
    room_save,
)

__all__ = [
    "SYSTEM_NAME", "REDACTED", "Draft", "Outcome", "Posted",
    "announce",
    "message_delete", "message_edit", "message_post", "messages_post", "messages_post_many", "messages_prune",
    "message_redact", "messages_delete", "room_set_slow_mode", "sanction_lift", "user_ban", "user_mute",
    "membership_remove", "membership_set", "room_archive", "room_create", "room_delete", "room_ensure_lobby",
    "room_reopen", "room_save",
    "Reacted", "may_react", "reaction_toggle", "read_mark",
]
