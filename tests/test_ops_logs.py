"""Structured logs: one line per connect, disconnect, refusal and fault, with room, user and request id."""

from __future__ import annotations

import json
import logging

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from choir import logs, services
from choir.middleware import RequestIdMiddleware
from tests.support import connect

SECRET_BODY = "TOP-SECRET-BODY-f3b1c0"


@pytest.fixture
def choir_lines(caplog, monkeypatch):
    """Records of the `choir` loggers (which do not otherwise reach caplog's root handler)."""
    import choirsite.asgi  # noqa: F401  (its django.setup() configures logging again, dropping caplog)

    monkeypatch.setattr(logging.getLogger("choir"), "propagate", True)
    caplog.set_level(logging.DEBUG, logger="choir")
    return caplog


def socket_lines(caplog) -> list[dict]:
    formatter = logs.JsonFormatter()
    return [json.loads(formatter.format(record)) for record in caplog.records if record.name == "choir.socket"]


@pytest.mark.django_db(transaction=True)
async def test_a_socket_logs_connect_refusal_and_disconnect_with_room_user_and_request_id(lobby, make_user, choir_lines, settings):
    from channels.db import database_sync_to_async

    settings.CHOIR_PROXY_HEADERS = True  # the id comes from a trusted proxy

    alice = await database_sync_to_async(make_user)("alice")
    sock = await connect("lobby", user=alice, headers=[(b"x-request-id", b"edge-42")])
    await sock.say(SECRET_BODY, client_id="c-1")
    await sock.expect("message")
    await sock.send({"type": "say", "body": ""})
    await sock.expect("error")
    await sock.close()

    lines = socket_lines(choir_lines)
    events = [line["event"] for line in lines]
    assert events == ["connect", "refusal", "disconnect"]
    for line in lines:
        assert line["room"] == "lobby"
        assert line["user"] == "alice" and line["user_id"] == alice.pk
        assert line["request_id"] == "edge-42"
        assert line["conn"] and line["level"] == "info" and line["ts"]
    assert lines[1]["code"] == "invalid" and lines[1]["detail"] == "message body is empty"
    assert lines[2]["code"] == 1000 and lines[2]["seconds"] >= 0
    assert all(SECRET_BODY not in record.getMessage() and SECRET_BODY not in json.dumps(line) for record, line in zip(choir_lines.records, lines))
    assert SECRET_BODY not in choir_lines.text


@pytest.mark.django_db(transaction=True)
async def test_without_a_proxy_id_a_socket_is_known_by_its_conn_id(lobby, choir_lines):
    sock = await connect("lobby")
    await sock.close()
    connect_line, disconnect_line = socket_lines(choir_lines)
    assert connect_line["request_id"] == connect_line["conn"] == disconnect_line["request_id"]


@pytest.mark.django_db(transaction=True)
async def test_a_refused_socket_is_logged_and_kept_for_the_desk(db, choir_lines):
    sock = await connect("no-such-room", hello=False)
    assert await sock.closed() == 4404
    await sock.close()
    (refusal, disconnect) = socket_lines(choir_lines)
    assert refusal["event"] == "refusal" and refusal["code"] == "close_4404" and refusal["room"] == "no-such-room"
    assert disconnect["event"] == "disconnect"
    latest = logs.recent_refusals.local[0]
    assert latest["code"] == "close_4404" and latest["room"] == "no-such-room"


@pytest.mark.django_db(transaction=True)
async def test_a_fault_is_logged_with_its_traceback_but_not_the_body(lobby, choir_lines, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("the storage layer fell over")

    monkeypatch.setattr(services, "messages_post_many", broken)
    sock = await connect("lobby")
    await sock.say(SECRET_BODY, client_id="c-9")
    error = await sock.expect("error")
    assert error["code"] == "unavailable"
    await sock.close()

    fault = next(line for line in socket_lines(choir_lines) if line["event"] == "fault")
    assert fault["level"] == "error" and fault["room"] == "lobby" and fault["user"]
    assert "RuntimeError: the storage layer fell over" in fault["exc"]
    assert SECRET_BODY not in choir_lines.text
    assert all(SECRET_BODY not in json.dumps(line) for line in socket_lines(choir_lines))


def test_lines_logged_while_serving_an_http_request_carry_its_id(choir_lines, settings):
    settings.CHOIR_PROXY_HEADERS = True
    log = logging.getLogger("choir.views")

    def view(request):
        log.info("page served", extra={"room": "lobby"})
        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(RequestFactory().get("/rooms/lobby/", HTTP_X_REQUEST_ID="edge-7"))
    assert response["X-Request-ID"] == "edge-7"
    (record,) = [r for r in choir_lines.records if r.name == "choir.views"]
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["request_id"] == "edge-7" and line["event"] == "page served" and line["room"] == "lobby"


def test_a_client_cannot_choose_its_request_id_without_a_trusted_proxy(settings):
    settings.CHOIR_PROXY_HEADERS = False
    seen = []

    def view(request):
        seen.append(request.request_id)
        return HttpResponse("ok")

    middleware = RequestIdMiddleware(view)
    first = middleware(RequestFactory().get("/", HTTP_X_REQUEST_ID="someone-elses-id"))
    second = middleware(RequestFactory().get("/", HTTP_X_REQUEST_ID="someone-elses-id"))
    assert first["X-Request-ID"] != "someone-elses-id" and seen[0] == first["X-Request-ID"]
    assert first["X-Request-ID"] != second["X-Request-ID"], "a fresh id each time"
    settings.CHOIR_PROXY_HEADERS = True
    assert middleware(RequestFactory().get("/", HTTP_X_REQUEST_ID="edge-9"))["X-Request-ID"] == "edge-9"
    assert middleware(RequestFactory().get("/", HTTP_X_REQUEST_ID="bad id\n"))["X-Request-ID"] != "bad id\n"


@pytest.mark.django_db(transaction=True)
async def test_a_socket_cannot_choose_its_request_id_without_a_trusted_proxy(lobby, choir_lines, settings):
    settings.CHOIR_PROXY_HEADERS = False
    sock = await connect("lobby", headers=[(b"x-request-id", b"someone-elses-id")])
    await sock.close()
    connect_line, _ = socket_lines(choir_lines)
    assert connect_line["request_id"] == connect_line["conn"] != "someone-elses-id"


def test_django_request_warnings_carry_the_id_of_their_request():
    """django.request logs a 404 after the middleware has finished; the request still has its id."""
    request = RequestFactory().get("/nowhere")
    request.request_id = "edge-404"
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s", ("/nowhere",), None)
    record.status_code = 404
    record.request = request
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["request_id"] == "edge-404" and line["path"] == "/nowhere" and line["status_code"] == 404
    assert line["event"] == "Not Found: /nowhere"


def test_logfmt_has_the_same_fields_for_people_at_a_terminal():
    record = logging.LogRecord("choir.socket", logging.INFO, __file__, 1, "connect", (), None)
    record.room = "lobby"
    record.user = "Ada Lovelace"
    text = logs.LogfmtFormatter().format(record)
    assert "event=connect" in text and "room=lobby" in text and 'user="Ada Lovelace"' in text and "level=info" in text
