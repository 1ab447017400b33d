from datetime import timedelta
from typing import Any

from choir.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from choir import services
from choir.models import Message, Room


class Command(BaseCommand):
    help = (
        "Delete history older than each room's retention (Room.retention_days), or --days for rooms "
        "without one. Batched; --dry-run only counts. Remaining messages keep their seqs."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--days", type=int, default=settings.CHOIR_RETENTION_DAYS, help="global limit in days")
        parser.add_argument("--room", help="only this room (slug)")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")

    def handle(self, *args: Any, days: int | None, room: str | None, batch_size: int, dry_run: bool, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        rooms = Room.objects.order_by("slug")
        if room:
            rooms = rooms.filter(slug=room)
            if not rooms.exists():
                raise CommandError(f"no room with slug {room!r}")
        now = timezone.now()
        total = 0
        for target in rooms:
            limit = target.retention_days or days
            if not limit:
                continue
            cutoff = now - timedelta(days=limit)
            due = Message.objects.filter(room=target, sent_at__lt=cutoff).count()
            if not due:
                continue
            if dry_run:
                self.stdout.write(f"{target.slug}: would delete {due} message(s) older than {limit} day(s)")
                total += due
                continue
            bar = _ProgressBar(target.slug, due, self.stderr)
            deleted = services.messages_prune(room=target, actor=services.SYSTEM, older_than=cutoff, batch_size=batch_size, on_batch=bar.advance)
            bar.finish()
            self.stdout.write(f"{target.slug}: deleted {deleted} message(s) older than {limit} day(s)")
            total += deleted
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"{verb} {total} message(s) in all")


class _ProgressBar:
    WIDTH = 30

    def __init__(self, label: str, total: int, stream: Any) -> None:
        self.label, self.total, self.done, self.stream = label, max(total, 1), 0, stream

    def advance(self, count: int) -> None:
        self.done += count
        filled = int(self.WIDTH * min(self.done, self.total) / self.total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done}/{self.total}", ending="")
        if hasattr(self.stream, "flush"):
            self.stream.flush()

    def finish(self) -> None:
        self.stream.write("")

