"""Choir's tables, one module per subject; every model is importable from `choir.models`."""

from choir.models.messages import Mention, Message, Reaction, ReadMarker
from choir.models.moderation import ModerationAction, Sanction
from choir.models.programs import ApiToken, WebhookDelivery, WebhookEndpoint
from choir.models.rooms import Membership, Room

__all__ = [
    "ApiToken", "Membership", "Mention", "Message", "ModerationAction", "Reaction", "ReadMarker", "Room",
    "Sanction", "WebhookDelivery", "WebhookEndpoint",
]
