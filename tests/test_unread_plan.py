"""Unread and mention counts cost an index range from the marker, not a scan of the room.

A room of 100,000 messages (bulk inserted), a reader 1,000 behind: PostgreSQL
must answer /api/rooms/'s counts from the message_live_seq and mention_unread
indexes. The plan is written to test-output/unread-plan.txt.
"""

import pytest
from django.db import connection

from choir.models import Mention, Message, ReadMarker, Room
from choir.selectors import search_messages, with_unread
from tests.support import OUTPUT

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SIZE = 100_000


@pytest.mark.django_db(transaction=True)
def test_unread_counts_on_a_room_of_100000_messages_use_the_indexes(lobby, make_user, uses_postgres):
    ann, bob = make_user("ann"), make_user("bob")
    quiet = Room.objects.create(slug="quiet", title="Quiet")
    with connection.cursor() as cursor:
        # One statement: every 7th by ann, every 50th mentions her, every 100th deleted.
        cursor.execute(
            f"""
            INSERT INTO {Message._meta.db_table}
                (room_id, seq, author_id, guest_key, author_name, body, client_id, sent_at,
                 deleted_at, mentions, reactions, rev, reply_to_id)
            SELECT %s, n, CASE WHEN n %% 7 = 0 THEN %s ELSE %s END, '', 'x',
                   CASE WHEN n %% 50 = 0 THEN 'hello @ann number ' || n ELSE 'message number ' || n END,
                   NULL, now(), CASE WHEN n %% 100 = 0 THEN now() ELSE NULL END, '[]', '{{}}', 0, NULL
            FROM generate_series(1, %s) AS n
            """,
            [lobby.pk, ann.pk, bob.pk, SIZE],
        )
        # Ann's mentions, and (so the table is not toy-sized) bob's in every 3rd.
        cursor.execute(
            f"""
            INSERT INTO {Mention._meta.db_table} (message_id, user_id, room_id, seq)
            SELECT id, %s, room_id, seq FROM {Message._meta.db_table}
            WHERE room_id = %s AND seq %% 50 = 0 AND seq %% 100 <> 0
            UNION ALL
            SELECT id, %s, room_id, seq FROM {Message._meta.db_table}
            WHERE room_id = %s AND seq %% 3 = 0 AND seq %% 100 <> 0
            """,
            [ann.pk, lobby.pk, bob.pk, lobby.pk],
        )
        cursor.execute(f"UPDATE {Room._meta.db_table} SET last_seq = %s WHERE id = %s", [SIZE, lobby.pk])
        # What autovacuum does to a table this size soon after: statistics, and
        # the visibility map that lets counts be answered from the index alone.
        cursor.execute(f"VACUUM ANALYZE {Message._meta.db_table}")
        cursor.execute(f"VACUUM ANALYZE {Mention._meta.db_table}")
    ReadMarker.objects.create(user=ann, room=lobby, seq=SIZE - 1_000)

    rooms = with_unread(Room.objects.filter(pk__in=[lobby.pk, quiet.pk]).order_by("title"), ann)
    counts = {room.slug: (room.unread, room.unread_mentions) for room in rooms}
    behind = range(SIZE - 999, SIZE + 1)
    expected_unread = sum(1 for n in behind if n % 7 and n % 100)
    expected_mentions = sum(1 for n in behind if n % 50 == 0 and n % 100)
    assert counts == {"lobby": (expected_unread, expected_mentions), "quiet": (0, 0)}

    plan = rooms.explain(analyze=True, buffers=True)
    search_plan = _search_plan(lobby)
    # The worst case: someone who never read the room counts all of it, still from the index alone.
    newcomer = make_user("cleo")
    never = with_unread(Room.objects.filter(pk=lobby.pk), newcomer)
    assert never.get().unread == sum(1 for n in range(1, SIZE + 1) if n % 100)
    never_plan = never.explain(analyze=True, buffers=True)
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "unread-plan.txt").write_text(
        f"-- /api/rooms/ counts for a reader 1,000 behind in a room of {SIZE:,} messages\n"
        f"{rooms.query}\n\n{plan}\n\n-- a reader with no marker\n{never_plan}\n\n"
        f"-- search 'number 99999'\n{search_plan}\n"
    )
    assert "Seq Scan on choir_message" not in never_plan
    print(plan)
    assert "Seq Scan on choir_message" not in plan
    assert "message_live_seq" in plan and "mention_unread" in plan
    assert "message_body_search" in search_plan


def _search_plan(room: Room) -> str:
    from django.contrib.postgres.search import SearchQuery, SearchVector

    assert [m["seq"] for m in search_messages(room, "number 99999", None, 5)] == [99999]
    rows = (
        Message.objects.filter(room=room, deleted_at__isnull=True)
        .annotate(found=SearchVector("body", config="simple"))
        .filter(found=SearchQuery("number 99999", config="simple", search_type="plain"))
        .order_by("-seq")[:5]
    )
    return rows.explain(analyze=True)
