"""Migrate the benchmark database and create its rooms (run as a subprocess).

`python -m bench.dbsetup SLUG...` with DATABASE_URL set. Rooms are
public and let guests post, since benchmark clients do not sign in.

`python -m bench.dbsetup --stage SLUG` makes SLUG a stage room with a
conductor, signs the conductor in and prints `session=KEY`, the cookie its
socket sends (the stage scenario's one voice).
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
            services.room_create(slug=slug, title=slug, is_public=True, guests_may_post=True, actor=services.SYSTEM)
    print(f"benchmark database ready: {len(slugs)} rooms")


def stage(slug: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "choirsite.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from choir import services
    from choir.models import Membership, Room

    room = Room.objects.filter(slug=slug).first() or services.room_create(
        slug=slug, title=slug, is_public=True, mode=Room.Mode.STAGE, actor=services.SYSTEM
    )
    if room.mode != Room.Mode.STAGE:
        room.mode = Room.Mode.STAGE
        services.room_save(room=room, actor=services.SYSTEM, changed=["mode"])
    user, _ = get_user_model().objects.get_or_create(username="bench-conductor")
    services.membership_set(room=room, actor=services.SYSTEM, user=user, role=Membership.Role.CONDUCTOR)
    client = Client()
    client.force_login(user)
    print(f"session={client.cookies[settings.SESSION_COOKIE_NAME].value}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--stage"]:
        stage(sys.argv[2])
    else:
        main(sys.argv[1:])
