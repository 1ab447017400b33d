"""Retention pruning and the command-line voice of the choir."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from choir import services
from choir.access import Singer
from choir.models import Message, ModerationAction

pytestmark = pytest.mark.django_db(transaction=True)


def fill(room, ages_in_days):
    singer = Singer(user=None, name="old-timer", guest_key="o")
    for age in ages_in_days:
        posted = services.message_post(room=room, singer=singer, body=f"{age} days old")
        Message.objects.filter(pk=posted.message.pk).update(sent_at=timezone.now() - timedelta(days=age))


def test_prune_deletes_exactly_the_old_rows_and_keeps_the_seqs_of_the_rest(lobby):
    fill(lobby, [40, 35, 31, 29, 2, 0])
    out = StringIO()
    call_command("choir_prune", "--days", "30", "--batch-size", "2", stdout=out, stderr=StringIO())
    remaining = list(Message.objects.filter(room=lobby).order_by("seq").values_list("seq", "body"))
    assert remaining == [(4, "29 days old"), (5, "2 days old"), (6, "0 days old")]
    assert "deleted 3 message(s)" in out.getvalue()
    posted = services.message_post(room=lobby, singer=Singer(user=None, name="n", guest_key="n"), body="next")
    assert posted.message.seq == 7
    assert ModerationAction.objects.filter(action="prune").count() == 1


def test_a_dry_run_changes_nothing(lobby):
    fill(lobby, [40, 35, 1])
    out = StringIO()
    call_command("choir_prune", "--days", "30", "--dry-run", stdout=out)
    assert Message.objects.count() == 3
    assert "would delete 2 message(s)" in out.getvalue()


def test_a_rooms_own_retention_wins_over_the_global_one(lobby, make_room):
    short = make_room("short", retention_days=1, guests_may_post=True)
    fill(lobby, [5, 0])
    fill(short, [5, 0])
    call_command("choir_prune", stdout=StringIO(), stderr=StringIO())
    assert Message.objects.filter(room=lobby).count() == 2  # no global limit set
    assert Message.objects.filter(room=short).count() == 1


def test_choir_say_posts_through_the_write_path(lobby, make_user):
    from django.contrib.auth.models import Permission

    make_user("conductor").user_permissions.add(Permission.objects.get(codename="announce"))
    out = StringIO()
    call_command("choir_say", "lobby", "Hello", "everyone", stdout=out)
    call_command("choir_say", "lobby", "Signed", "--as", "conductor", stdout=out)
    rows = list(Message.objects.order_by("seq").values_list("seq", "author_name", "body"))
    assert rows == [(1, "Choir", "Hello everyone"), (2, "conductor", "Signed")]
    assert "posted #2 to lobby" in out.getvalue()


def test_choir_say_refuses_unknown_rooms_and_closed_ones(lobby):
    with pytest.raises(CommandError):
        call_command("choir_say", "nowhere", "hi")
    services.room_archive(room=lobby, actor=services.SYSTEM)
    with pytest.raises(CommandError, match="closed"):
        call_command("choir_say", "lobby", "hi")
