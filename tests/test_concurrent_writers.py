"""Several writers posting to one room at once get seqs 1..N, no gap, no duplicate."""

import subprocess
import sys
import threading

import pytest
from django.db import connections

from choir import services
from choir.access import Singer
from choir.models import Message, Room
from tests.support import ROOT, server_env

pytestmark = pytest.mark.django_db(transaction=True)


def _post_many(room: Room, writer: int, count: int, errors: list) -> None:
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


def test_threads_posting_at_once_get_gap_free_seqs(lobby):
    errors: list = []
    threads = [threading.Thread(target=_post_many, args=(lobby, w, 25, errors)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _assert_gap_free(lobby, 8 * 25)


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
