"""Migrate the benchmark database and create its rooms (run as a subprocess).

`python -m bench.dbsetup SLUG...` with DATABASE_URL set. Rooms are
public and let guests post, since benchmark clients do not sign in.
"""

from __future__ import annotations

import os
import sys


def main(slugs: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "choirsite.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from choir import services
    from choir.models import Room

    call_command("migrate", verbosity=0, interactive=False)
    existing = set(Room.objects.filter(slug__in=slugs).values_list("slug", flat=True))
    for slug in slugs:
        if slug not in existing:
            services.room_create(slug=slug, title=slug, is_public=True, guests_may_post=True)
    print(f"benchmark database ready: {len(slugs)} rooms")


if __name__ == "__main__":
    main(sys.argv[1:])
