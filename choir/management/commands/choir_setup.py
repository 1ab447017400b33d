from django.core.management.base import BaseCommand

from choir import services


class Command(BaseCommand):
    help = "Ensure the rooms every install has (the public 'lobby', where guests may post)."

    def handle(self, *args, **options) -> None:
        room = services.room_ensure_lobby()  # trusted setup: no actor to check
        self.stdout.write(f"room '{room.slug}' ready")
