"""Create a bot account (a user who cannot sign in with a password) and give it a token."""

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from choir.models import Room
from choir.protocol import Refusal
from choir.access import SYSTEM
from choir.services import tokens as token_services


class Command(BaseCommand):
    help = "Create a bot account (or reuse one) and print a new API token for it; the token is shown only once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username", help="the bot's username; made if it does not exist")
        parser.add_argument("--token-name", default="bot", help="a name for the token (default: bot)")
        parser.add_argument(
            "--room", action="append", default=[], help="limit the token to this room's slug (repeatable)"
        )
        parser.add_argument("--read-only", action="store_true", help="the token may read but never post")
        parser.add_argument("--expires-days", type=int, help="the token expires after this many days")

    def handle(self, *args: Any, username: str, token_name: str, room: list[str], read_only: bool,
               expires_days: int | None, **options: Any) -> None:
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(username=username)
            user.set_unusable_password()  # a bot signs in with tokens only
            user.save()
            self.stderr.write(f"created bot account {username!r}")
        rooms = []
        for slug in room:
            found = Room.objects.filter(slug=slug).first()
            if found is None:
                raise CommandError(f"no room with slug {slug!r}")
            rooms.append(found)
        try:
            _, secret = token_services.token_issue(
                user=user, name=token_name, actor=SYSTEM, rooms=rooms, read_only=read_only,
                expires_at=timezone.now() + timedelta(days=expires_days) if expires_days else None,
            )
        except Refusal as refusal:
            raise CommandError(refusal.detail) from None
        self.stdout.write(secret)
