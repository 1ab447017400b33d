"""Deliver webhooks from the outbox until stopped (choir/webhooks.py).

`manage.py serve` runs this as a supervised child process; in production it
may run as its own unit (deploy/systemd/choir-webhooks.service). Several may
run at once on PostgreSQL (rows are locked while sent); on SQLite run one.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from choir import webhooks
from choir.conf import settings

log = logging.getLogger("choir.webhooks")


class Command(BaseCommand):
    help = "Deliver webhook events from the outbox, in order per endpoint and room, with retries."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="deliver what is due now, then exit")

    def handle(self, *args: Any, once: bool, **options: Any) -> None:
        if once:
            self.stdout.write(f"delivered {webhooks.deliver_pass()}")
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        log.info("webhook worker started")
        while not stop.is_set():
            close_old_connections()
            try:
                delivered = webhooks.deliver_pass()
            except Exception:
                # The database is away, say: wait and try again rather than die.
                log.warning("webhook pass failed; retrying", exc_info=True)
                delivered = 0
            if not delivered:
                stop.wait(settings.CHOIR_WEBHOOK_POLL)
        log.info("webhook worker stopped")
