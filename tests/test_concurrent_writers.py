"""Several writers posting to one room at once get seqs 1..N, no gap, no duplicate."""

import random
import subprocess
import sys
import threading

import pytest
from django.db import connections

from choir import services
from choir.access import Singer
from choir.models import Message, Room
from choir.services import Draft, Posted
from tests.support import ROOT, server_env

pytestmark = pytest.mark.django_db(transaction=True)


def _post_many(room: Room, writer: int, errors: list, count: int = 25) -> None:
    singer = Singer(user=None, name=f"writer-{writer}", guest_key=f"w{writer}")
    try:
        for i in range(count):
            services.message_post(room=room, singer=singer, body=f"{writer}:{i}", client_id=f"{writer}-{i}")
    except Exception as exc:  # surfaced by the assertion below
        errors.append(exc)
    finally:
        connections.close_all()


def _assert_gap_free(room: Room, expected: int) -> None:
    seqs = list(Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, expected + 1))
    room.refresh_from_db()
    assert room.last_seq == expected


def _run_writers(target, writers: int, *args) -> list:
    """Run `writers` threads of target(*args, writer, errors) at once; what went wrong."""
    errors: list = []
    threads = [threading.Thread(target=target, args=(*args, w, errors)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_threads_posting_at_once_get_gap_free_seqs(lobby):
    assert _run_writers(_post_many, 8, lobby) == []
    _assert_gap_free(lobby, 8 * 25)


def _post_batches(rooms: list[Room], writer: int, errors: list, batches: int = 15) -> None:
    singer = Singer(user=None, name=f"mixer-{writer}", guest_key=f"m{writer}")
    rng = random.Random(writer)
    try:
        for b in range(batches):
            chosen = rng.sample(rooms, k=rng.randint(2, len(rooms)))
            items = [(room, Draft(singer, f"{writer}:{b}", f"{writer}-{b}")) for room in chosen]
            errors.extend(o for o in services.messages_post_many(items=items) if not isinstance(o, Posted))
    except Exception as exc:
        errors.append(exc)
    finally:
        connections.close_all()


def test_batches_spanning_shared_rooms_neither_deadlock_nor_leave_gaps(lobby, make_room):
    # Each batch takes every room's seqs in one statement (allocate_seqs_many);
    # writers whose batches overlap in any order must queue, not deadlock.
    rooms = [lobby] + [make_room(f"mix-{i}", guests_may_post=True) for i in range(3)]
    assert _run_writers(_post_batches, 6, rooms) == []
    for room in rooms:
        _assert_gap_free(room, Message.objects.filter(room=room).count())
        # Every writer's posts to a room keep that writer's order.
        for w in range(6):
            bodies = list(Message.objects.filter(room=room, author_name=f"mixer-{w}").order_by("seq").values_list("body", flat=True))
            assert bodies == sorted(bodies, key=lambda body: int(body.split(":")[1]))


WRITER = """
import django, os, sys
django.setup()
from choir import services
from choir.access import Singer
from choir.models import Room
room = Room.objects.get(slug="lobby")
w = int(sys.argv[1])
singer = Singer(user=None, name=f"proc-{w}", guest_key=f"p{w}")
for i in range(int(sys.argv[2])):
    services.message_post(room=room, singer=singer, body=f"{w}:{i}", client_id=f"{w}-{i}")
"""


def test_processes_posting_at_once_get_gap_free_seqs(lobby):
    env = {**server_env(), "DJANGO_SETTINGS_MODULE": "choirsite.settings"}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(w), "40"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
        for w in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
    _assert_gap_free(lobby, 4 * 40)
    # Every writer's messages are in the order that writer sent them.
    for w in range(4):
        bodies = list(Message.objects.filter(room=lobby, author_name=f"proc-{w}").order_by("seq").values_list("body", flat=True))
        assert bodies == [f"{w}:{i}" for i in range(40)]
