from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from choir import services
from choir.access import Singer, display_name
from choir.models import Room
from choir.protocol import Refusal


class Command(BaseCommand):
    help = "Post a message to a room from outside a socket: stored, sequenced and broadcast like any other."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("room", help="the room's slug")
        parser.add_argument("text", nargs="+", help="the message")
        parser.add_argument("--as", dest="username", help="post as this user (default: the Choir system voice)")

    def handle(self, *args: Any, room: str, text: list[str], username: str | None, **options: Any) -> None:
        target = Room.objects.filter(slug=room).first()
        if target is None:
            raise CommandError(f"no room with slug {room!r}")
        # Whoever runs manage.py already holds the keys: the system voice by default.
        actor = services.SYSTEM
        if username:
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                raise CommandError(f"no user called {username!r}")
            actor = Singer(user=user, name=display_name(user))
        try:
            posted = services.announce(room=target, text=" ".join(text), actor=actor)
        except Refusal as refusal:
            raise CommandError(refusal.detail) from None
        self.stdout.write(f"posted #{posted.message.seq} to {target.slug}")
