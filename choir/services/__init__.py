"""Every change to Choir's state: store it, then broadcast it once committed.

The consumer, the views, the admin and the management commands all call these
functions; nothing else writes rooms or messages or talks to the channel layer.
Each checks, then does: it validates its input and the actor's authority
(room role or Django permission, see choir.access), and only then writes and
broadcasts on commit. Every action takes the acting `Singer`; trusted code
with nobody behind it (management commands, setup, other Django code) passes
`SYSTEM`. Each raises `protocol.Refusal` when the change is not allowed, so
every caller reports refusals the same way. One module per noun:

- `messages`: post (one, or a batch from the socket writer), edit, delete, prune
- `moderation`: redact, bulk delete, mute, ban, lift, slow mode
- `rooms`: create, save, archive, reopen, delete; memberships
- `announcements`: posts from admin, commands and other Django code
- `audit`: the moderation log, written in the change's own transaction
- `tokens`: API tokens, issued and revoked
- `authority`: the checks the others make before they write
- `reactions`: toggle a person's emoji on a message
- `reads`: move a person's read marker in a room
"""

from __future__ import annotations

from choir.access import SYSTEM, SYSTEM_NAME
from choir.services.announcements import announce
from choir.services.messages import (
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
from choir.services.tokens import token_issue, token_revoke
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
    "SYSTEM", "SYSTEM_NAME", "REDACTED", "Draft", "Outcome", "Posted",
    "announce",
    "message_delete", "message_edit", "message_post", "messages_post", "messages_post_many", "messages_prune",
    "message_redact", "messages_delete", "room_set_slow_mode", "sanction_lift", "user_ban", "user_mute",
    "membership_remove", "membership_set", "room_archive", "room_create", "room_delete", "room_ensure_lobby",
    "room_reopen", "room_save",
    "token_issue", "token_revoke",
    "Reacted", "may_react", "reaction_toggle", "read_mark",
]
