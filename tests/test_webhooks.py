"""Webhooks out: outbox in the change's transaction, signed, in order per room, retried, once."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from choir import services, webhooks
from choir.access import Singer
from choir.models import WebhookDelivery, WebhookEndpoint
from tests.support import free_port

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec-test-secret"


class Receiver:
    """A real HTTP receiver in a thread. `behave(n, event)` picks the answer to the n-th request:
    an HTTP status, or "timeout" to answer too late."""

    def __init__(self, behave=None, port: int | None = None) -> None:
        self.behave = behave or (lambda n, event: 200)
        self.requests: list[dict] = []  # every request that arrived, with the status it got
        self.lock = threading.Lock()
        self.port = port or free_port()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event = json.loads(body)
                with receiver.lock:
                    n = len(receiver.requests)
                    answer = receiver.behave(n, event)
                    record = {
                        "event": event, "body": body, "answer": answer,
                        "delivery": self.headers["Choir-Delivery"], "type": self.headers["Choir-Event"],
                        "signature": self.headers["Choir-Signature"],
                    }
                    receiver.requests.append(record)
                if answer == "timeout":
                    time.sleep(1.0)  # longer than CHOIR_WEBHOOK_TIMEOUT below
                    answer = 200
                self.send_response(answer)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> list[dict]:
        """What a receiver that drops repeats by delivery id keeps, in arrival order."""
        seen, kept = set(), []
        for record in self.requests:
            if record["answer"] in (200, "timeout") and record["delivery"] not in seen:
                seen.add(record["delivery"])
                kept.append(record["event"])
        return kept


@pytest.fixture
def quick(settings):
    settings.CHOIR_WEBHOOK_TIMEOUT = 0.4
    settings.CHOIR_WEBHOOK_RETRY_BASE = 0.05
    settings.CHOIR_WEBHOOK_RETRY_MAX = 0.2
    webhooks.forget_endpoints()
    yield
    webhooks.forget_endpoints()


def endpoint(url, **fields):
    return WebhookEndpoint.objects.create(url=url, secret=SECRET, **fields)


def drain(deadline=60.0):
    """Run the worker until the outbox is empty."""
    end = time.monotonic() + deadline
    while WebhookDelivery.objects.filter(delivered_at__isnull=True).exists():
        assert time.monotonic() < end, list(WebhookDelivery.objects.filter(delivered_at__isnull=True).values())
        if not webhooks.deliver_pass():
            time.sleep(0.05)


def post(room, n, who="ann"):
    return services.message_post(room=room, singer=Singer(user=None, name=who, guest_key=who), body=f"m{n}", client_id=f"c{n}")


def by_room(events):
    rooms: dict[str, list] = {}
    for event in events:
        rooms.setdefault(event["data"].get("room") or event["data"].get("slug"), []).append(event)
    return rooms


def test_every_event_arrives_signed_in_order_once_through_failures_and_timeouts(lobby, make_room, make_user, quick):
    hall = make_room("hall", guests_may_post=True)
    # Five 500s, then two answers too late (the receiver got them: a resend follows), then all well.
    receiver = Receiver(lambda n, event: 500 if n < 5 else "timeout" if n < 7 else 200).start()
    endpoint(receiver.url)
    try:
        author = Singer(user=make_user("ann"), name="ann")
        for n in range(1, 16):
            services.message_post(room=lobby if n % 3 else hall, singer=author, body=f"m{n}", client_id=f"c{n}")
        services.message_edit(room=lobby, actor=author, seq=2, body="m2, edited")
        services.message_delete(room=lobby, actor=author, seq=3)
        services.message_post(room=lobby, singer=author, body="last", client_id="last")
        expected = list(WebhookDelivery.objects.order_by("id").values_list("delivery_id", flat=True))
        drain()
    finally:
        receiver.stop()
    kept = receiver.accepted()
    assert sorted(e["id"] for e in kept) == sorted(str(d) for d in expected)  # all of them, once each
    rooms = by_room(kept)
    for room in (lobby, hall):  # each room's in outbox order (rooms do not wait for each other)
        in_outbox = [str(d) for d in WebhookDelivery.objects.filter(room_key=room.pk).order_by("id").values_list("delivery_id", flat=True)]
        assert [e["id"] for e in rooms[room.slug]] == in_outbox
    lobby_kinds = [(e["type"], e["data"]["seq"]) for e in rooms["lobby"]]
    posted = [seq for kind, seq in lobby_kinds if kind == "message.posted"]
    assert posted == list(range(1, len(posted) + 1)) and len(posted) == 11
    assert lobby_kinds[-3:] == [("message.changed", 2), ("message.deleted", 3), ("message.posted", 11)]
    assert [e["data"]["seq"] for e in rooms["hall"]] == [1, 2, 3, 4, 5]
    # The retries and the timeouts really happened, and each attempt carried the same id and body.
    assert [r["answer"] for r in receiver.requests[:7]] == [500] * 5 + ["timeout"] * 2
    assert len(receiver.requests) > len(expected)
    bodies: dict[str, bytes] = {}
    for record in receiver.requests:
        assert webhooks.verify(SECRET, record["signature"], record["body"])
        assert not webhooks.verify("wrong secret", record["signature"], record["body"])
        assert bodies.setdefault(record["delivery"], record["body"]) == record["body"]
        assert record["type"] == record["event"]["type"]
    assert WebhookDelivery.objects.filter(attempts__gt=1).exists()


def test_a_failing_event_holds_back_its_room_but_not_the_others(lobby, make_room, quick, settings):
    settings.CHOIR_WEBHOOK_RETRY_BASE = settings.CHOIR_WEBHOOK_RETRY_MAX = 30  # no retry within this test
    hall = make_room("hall", guests_may_post=True)
    receiver = Receiver(lambda n, event: 500 if event["data"].get("room") == "lobby" else 200).start()
    endpoint(receiver.url)
    try:
        for n in range(3):
            post(lobby, n)
            post(hall, n)
        webhooks.deliver_pass()
        webhooks.deliver_pass()
    finally:
        receiver.stop()
    lobby_requests = [r for r in receiver.requests if r["event"]["data"]["room"] == "lobby"]
    assert [r["event"]["data"]["seq"] for r in lobby_requests] == [1]  # only the head, once: it waits its backoff
    assert [e["data"]["seq"] for e in by_room(receiver.accepted())["hall"]] == [1, 2, 3]
    head = WebhookDelivery.objects.filter(room_key=lobby.pk).order_by("id").first()
    assert head.attempts == 1 and head.last_status == 500 and head.last_error == "HTTP 500"
    assert head.next_attempt_at > timezone.now() + timedelta(seconds=20)


def test_a_receiver_down_for_an_hour_catches_up_in_order_nothing_lost_nothing_twice(lobby, quick, settings):
    settings.CHOIR_WEBHOOK_RETRY_MAX = 3600
    port = free_port()
    endpoint(f"http://127.0.0.1:{port}/hooks")  # nothing listens there yet
    for n in range(1, 31):
        post(lobby, n)
    # An hour of refused connections: the backoff grows, the outbox keeps everything.
    for _ in range(12):
        webhooks.deliver_pass()
        WebhookDelivery.objects.filter(delivered_at__isnull=True).update(next_attempt_at=timezone.now())
    head = WebhookDelivery.objects.order_by("id").first()
    assert head.attempts == 12 and "Connection" in head.last_error
    assert WebhookDelivery.objects.filter(attempts=0).count() == 29  # held behind the head, never sent
    receiver = Receiver(port=port).start()
    try:
        # The hour is up: the head's next attempt is due.
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())
        drain()
    finally:
        receiver.stop()
    assert [e["data"]["seq"] for e in receiver.accepted()] == list(range(1, 31))
    assert len(receiver.requests) == 30  # nothing sent twice


def test_the_backoff_doubles_from_the_base_up_to_the_cap(settings):
    settings.CHOIR_WEBHOOK_RETRY_BASE = 2.0
    settings.CHOIR_WEBHOOK_RETRY_MAX = 300.0
    for n in (1, 2, 5):
        assert 0.9 * 2 * 2 ** (n - 1) <= webhooks.backoff(n) <= 1.1 * 2 * 2 ** (n - 1)
    assert 270 <= webhooks.backoff(30) <= 330


def test_the_outbox_is_written_in_the_changes_transaction(lobby, quick):
    endpoint("http://127.0.0.1:9/never")
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            post(lobby, 1)
            assert WebhookDelivery.objects.count() == 1
            raise RuntimeError("roll back")
    assert WebhookDelivery.objects.count() == 0
    post(lobby, 2)
    assert WebhookDelivery.objects.count() == 1


def test_endpoints_choose_their_room_and_event_types(lobby, make_room, make_user, quick):
    hall = make_room("hall", guests_may_post=True)
    everything = endpoint("http://127.0.0.1:9/all")
    hall_posts = endpoint("http://127.0.0.1:9/hall", room=hall, event_types=["message.posted"])
    endpoint("http://127.0.0.1:9/off", active=False)
    boss = Singer(user=make_user("boss", is_staff=True, is_superuser=True), name="boss")
    post(lobby, 1)
    post(hall, 2)
    services.user_mute(room=hall, actor=boss, user=make_user("sam"), minutes=5)
    services.room_archive(room=hall, actor=boss)
    kinds = lambda ep: list(WebhookDelivery.objects.filter(endpoint=ep).order_by("id").values_list("event_type", flat=True))  # noqa: E731
    assert kinds(everything) == ["message.posted", "message.posted", "member.sanctioned", "room.archived"]
    assert kinds(hall_posts) == ["message.posted"]
    assert WebhookDelivery.objects.count() == 5


def test_every_event_type_has_a_payload(lobby, make_user, quick):
    ep = endpoint("http://127.0.0.1:9/all")
    boss = Singer(user=make_user("boss", is_staff=True, is_superuser=True), name="boss")
    room = services.room_create(slug="new", title="New", actor=boss)
    services.room_set_slow_mode(room=room, actor=boss, seconds=5)
    services.user_ban(room=room, actor=boss, user=make_user("sam"), reason="spam")
    services.message_post(room=room, singer=boss, body="hello")
    services.message_edit(room=room, actor=boss, seq=1, body="hello!")
    services.message_delete(room=room, actor=boss, seq=1)
    services.room_archive(room=room, actor=boss, reason="done")
    services.room_reopen(room=room, actor=boss)
    rows = list(WebhookDelivery.objects.filter(endpoint=ep).order_by("id"))
    events = [(r.event_type, json.loads(r.payload)) for r in rows]
    assert [t for t, _ in events] == [
        "room.opened", "room.changed", "member.sanctioned", "message.posted",
        "message.changed", "message.deleted", "room.archived", "room.opened",
    ]
    data = dict(events[:7])
    assert data["room.opened"]["slug"] == "new"
    assert data["room.changed"]["changed"] == ["slow_mode_seconds"] and data["room.changed"]["slow_mode_seconds"] == 5
    assert data["member.sanctioned"] == {"room": "new", "user": "sam", "kind": "ban", "until": None, "reason": "spam", "by": "boss"}
    assert data["message.posted"]["body"] == "hello" and data["message.posted"]["seq"] == 1
    assert data["message.changed"]["body"] == "hello!" and data["message.deleted"]["deleted"] is True
    assert data["room.archived"]["reason"] == "done" and events[-1][1]["reopened"] is True


def test_the_documented_verification_example_accepts_a_real_delivery(lobby, quick):
    receiver = Receiver().start()
    endpoint(receiver.url)
    try:
        post(lobby, 1)
        drain()
    finally:
        receiver.stop()
    record = receiver.requests[0]
    namespace: dict = {}
    exec(_doc_example(), namespace)  # the Python example in docs/webhooks.md, as written
    assert namespace["verify"](record["body"], record["signature"], SECRET)
    assert not namespace["verify"](record["body"] + b" ", record["signature"], SECRET)
    stale = "t=1000," + record["signature"].split(",", 1)[1]
    assert not namespace["verify"](record["body"], stale, SECRET)


def _doc_example() -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "webhooks.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_admin_shows_failures_and_replays_from_a_point(lobby, make_user, quick):
    ep = endpoint("http://127.0.0.1:9/down")
    for n in range(1, 6):
        post(lobby, n)
    WebhookDelivery.objects.filter(id__in=list(WebhookDelivery.objects.order_by("id").values_list("id", flat=True)[:3])).update(
        delivered_at=timezone.now(), attempts=1, last_status=200
    )
    WebhookDelivery.objects.filter(delivered_at__isnull=True).update(attempts=4, last_status=500, last_error="HTTP 500")
    boss = make_user("boss", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(boss)
    listing = client.get("/admin/choir/webhookendpoint/").content.decode()
    assert ep.url in listing
    page = client.get(f"/admin/choir/webhookendpoint/{ep.pk}/change/").content.decode()
    assert "HTTP 500" in page and "failing" in page and "delivered" in page
    assert "HTTP 500" in client.get("/admin/choir/webhookdelivery/?state=failing").content.decode()
    second = WebhookDelivery.objects.order_by("id")[1]
    response = client.post("/admin/choir/webhookdelivery/", {"action": "replay_from_here", "_selected_action": [second.pk]})
    assert response.status_code == 302
    rows = list(WebhookDelivery.objects.order_by("id"))
    assert rows[0].delivered_at is not None
    assert all(r.delivered_at is None and r.attempts == 0 for r in rows[1:])
    viewer = make_user("viewer", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    client.force_login(viewer)
    WebhookDelivery.objects.update(delivered_at=timezone.now())
    client.post("/admin/choir/webhookdelivery/", {"action": "replay_from_here", "_selected_action": [rows[0].pk]})
    assert not WebhookDelivery.objects.filter(delivered_at__isnull=True).exists()


def test_concurrent_workers_keep_order_and_send_each_once(lobby, make_room, quick, uses_postgres):
    hall = make_room("hall", guests_may_post=True)
    receiver = Receiver(lambda n, event: 500 if n % 4 == 0 else 200).start()
    endpoint(receiver.url)
    for n in range(1, 41):
        post(lobby if n % 2 else hall, n)

    def work():
        from django.db import connection

        try:
            end = time.monotonic() + 60
            while time.monotonic() < end and WebhookDelivery.objects.filter(delivered_at__isnull=True).exists():
                if not webhooks.deliver_pass(per_lane=3):
                    time.sleep(0.02)
        finally:
            connection.close()

    workers = [threading.Thread(target=work) for _ in range(3)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(90)
    finally:
        receiver.stop()
    ok = [r for r in receiver.requests if r["answer"] == 200]
    assert len({r["delivery"] for r in ok}) == len(ok) == 40  # each answered 200 exactly once
    rooms = by_room([r["event"] for r in ok])
    assert [e["data"]["seq"] for e in rooms["lobby"]] == list(range(1, 21))
    assert [e["data"]["seq"] for e in rooms["hall"]] == list(range(1, 21))


def test_staff_add_an_endpoint_in_admin_and_it_gets_the_next_event(lobby, make_user, quick):
    boss = make_user("boss", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(boss)
    assert not webhooks.wanted()  # this process now holds "no endpoints" for a while
    response = client.post("/admin/choir/webhookendpoint/add/", {
        "url": "receiver.example.com/hooks", "description": "ops", "secret": "s3cret", "room": lobby.pk,
        "event_types": '["message.posted"]', "active": "on",
        "deliveries-TOTAL_FORMS": "0", "deliveries-INITIAL_FORMS": "0",
        "deliveries-MIN_NUM_FORMS": "0", "deliveries-MAX_NUM_FORMS": "0",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    ep = WebhookEndpoint.objects.get()
    assert ep.url == "https://receiver.example.com/hooks" and ep.room == lobby
    post(lobby, 1)  # no wait for the endpoint cache: saving it cleared this process's copy
    assert list(WebhookDelivery.objects.values_list("endpoint_id", "event_type")) == [(ep.pk, "message.posted")]
