"""Every URL pattern and socket route, fed hostile values: a 4xx or a refusal, never a 5xx or an ERROR line.

The patterns come from walking the resolver (site, accounts, api, admin), so a
route added later is swept without anyone remembering to add it here.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from choir.numbers import NotAWholeNumber, whole_number

# As they go on the wire: already percent-encoded where that is the point.
HOSTILE = [
    quote("²"),
    quote("¹²"),
    quote("①"),
    quote("१२"),  # Devanagari digits: isdigit() and int() both accept them
    "9" * 40,
    str(2**63),
    "-1",
    "1e400",
    "1.5",
    "%00",
    "a%00b",
    "x" * 3000,
    "..%2F..%2Fchoirsite%2Fsettings.py",
    "../../choirsite/settings.py",
    "%ff",
    "%E2%28%A1",  # bad UTF-8
    "%",
    "%zz",
    "%20",
]
# Query parameters and form fields that some view reads.
FIELDS = [
    "before", "after", "limit", "next", "name", "q", "o", "p", "e", "_changelist_filters", "all", "id",
    "username", "password", "password1", "password2", "email", "old_password", "new_password1",
    "new_password2", "action", "_selected_action", "reason", "body", "slug", "title", "room", "user",
]
# The moderation form's numbers are another change's fix (issue 12, item 3):
# drop this once it is in.
FIELDS_OWNED_ELSEWHERE = {"room-moderate": {"minutes", "seconds"}}

_GROUP = re.compile(r"<(?:\w+:)?\w+>|\(\?P<\w+>[^)]*\)")


def url_templates() -> Iterator[tuple[str, str]]:
    """(name, template) for every pattern; `{}` where a captured value goes."""

    def walk(patterns: list, prefix: str) -> Iterator[tuple[str, str]]:
        for entry in patterns:
            text = str(entry.pattern).lstrip("^").rstrip("$")
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, prefix + text)
            elif isinstance(entry, URLPattern):
                yield entry.name or text, "/" + _GROUP.sub("{}", (prefix + text).replace("^", "").replace("$", ""))

    yield from walk(get_resolver().url_patterns, "")


def _sample(template: str) -> str:
    return template.replace("{}", "lobby")


def hostile_urls(template: str) -> Iterator[str]:
    slots = template.count("{}")
    for value in HOSTILE:
        for slot in range(slots):
            parts = template.split("{}")
            fills = ["lobby"] * slots
            fills[slot] = value
            yield "".join(p + (fills[i] if i < slots else "") for i, p in enumerate(parts))
        yield _sample(template) + "?" + "&".join(f"{field}={value}" for field in FIELDS)


class ErrorLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_lines():
    """Every ERROR record from Django's, Choir's and the root loggers (they do not all propagate)."""
    import choirsite.asgi  # noqa: F401  (configures logging again; do it before attaching)

    handler = ErrorLines()
    loggers = [logging.getLogger(name) for name in ("", "django", "choir", "daphne")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.records
    for logger in loggers:
        logger.removeHandler(handler)


def _describe(record: logging.LogRecord) -> str:
    return f"{record.name}: {record.getMessage()[:200]}"


@pytest.mark.parametrize("numbers", ["²", "¹²", "①", "१२", "-1", "1.5", "1e3", "+1", "9" * 19, "9" * 5000, "\x00", "1\n"])
def test_the_shared_parser_takes_only_ascii_digits_in_range(numbers):
    with pytest.raises(NotAWholeNumber):
        whole_number(numbers, "before")


def test_the_shared_parser_reads_whole_numbers_and_absence():
    assert whole_number("42", "n") == 42
    assert whole_number(" 7 ", "n") == 7
    assert whole_number(None, "n", default=3) == 3 and whole_number("", "n") is None
    assert whole_number(str(2**63 - 1), "n") == 2**63 - 1
    with pytest.raises(NotAWholeNumber, match="from 1 to 10"):
        whole_number("11", "n", minimum=1, maximum=10)


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["²", "¹²", "①", "9" * 40, "-1"])
def test_the_room_page_answers_a_bad_before_with_400(client, lobby, value):
    response = client.get(lobby.get_absolute_url(), {"before": value})
    assert response.status_code == 400
    assert "before" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["²", "①", str(2**63)])
def test_the_api_answers_a_bad_number_with_400(client, lobby, value):
    response = client.get("/api/rooms/lobby/messages", {"after": value})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["guest", pytest.param("staff", marks=pytest.mark.slow), pytest.param("guest-debug", marks=pytest.mark.slow)])
def test_every_url_pattern_answers_hostile_values_without_a_5xx_or_an_error_line(who, lobby, make_user, error_lines, settings):
    settings.DEBUG = who.endswith("-debug")  # DEBUG's technical 404 page renders the hostile path
    client = Client(raise_request_exception=False)
    if who == "staff":
        client.force_login(make_user("root", is_staff=True, is_superuser=True))
    templates = list(url_templates())
    assert len(templates) > 40, "the walk should reach admin, accounts and api"
    failures: list[str] = []
    for name, template in templates:
        owned_elsewhere = FIELDS_OWNED_ELSEWHERE.get(name, set())
        form_fields = [field for field in FIELDS + ["minutes", "seconds"] if field not in owned_elsewhere]
        for url in hostile_urls(template):
            before = len(error_lines)
            for method in ("get", "post"):
                if method == "post":
                    data = {field: url.rsplit("=", 1)[-1] for field in form_fields}
                    response = client.post(url.split("?")[0], data)
                else:
                    response = client.get(url)
                if response.status_code >= 500:
                    failures.append(f"{method.upper()} {url[:120]} -> {response.status_code}")
            failures += [f"{url[:120]} logged {_describe(r)}" for r in error_lines[before:]]
    assert not failures, "\n".join(failures[:40])


SOCKET_PATHS = ["/ws/nothing/", "/ws/rooms/a b/", "/ws/rooms/lobby", "/ws/", "/", "/ws/rooms/lobby/extra/", "/ws/rooms//"]


def socket_templates() -> Iterator[str]:
    from choir.routing import websocket_urlpatterns

    for entry in websocket_urlpatterns:
        yield "/" + _GROUP.sub("{}", str(entry.pattern).lstrip("^").rstrip("$"))


@pytest.mark.django_db(transaction=True)
async def test_every_socket_route_refuses_hostile_paths_cleanly(lobby, error_lines):
    from choirsite.asgi import application

    paths = list(SOCKET_PATHS)
    for template in socket_templates():
        for value in HOSTILE:
            for url in hostile_urls(template):
                paths.append(url.replace("&", f"&name={value}&", 1))
    failures: list[str] = []
    for path in dict.fromkeys(paths):
        before = len(error_lines)
        comm = WebsocketCommunicator(application, path)
        try:
            connected, _ = await comm.connect(timeout=5)
        except Exception as exc:  # noqa: BLE001  (the old router raised for paths it had no route for)
            failures.append(f"{path[:100]} raised {exc!r}"[:200])
            continue
        if connected:
            await comm.disconnect()
        failures += [f"{path[:100]} logged {_describe(r)}" for r in error_lines[before:]]
    assert not failures, "\n".join(failures[:40])


# Against real Daphne: its own path decoding, and the static file handler it runs.


def raw_get(port: int, target: bytes, headers: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + headers + b"\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


TRAVERSALS = [
    b"/static/../choirsite/settings.py",
    b"/static/%2e%2e/choirsite/settings.py",
    b"/static/..%2fchoirsite%2fsettings.py",
    b"/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"/static//etc/passwd",
    b"/static/%00",
    b"/static/choir/%ff",
    b"/static/..\\choirsite\\settings.py",
]
HANDSHAKE = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


@pytest.mark.e2e
def test_daphne_answers_traversal_and_unknown_socket_paths_with_4xx_and_no_error_line(daphne):
    server = daphne(extra_env={"CHOIR_SERVE_STATIC": "1", "DEBUG": "0", "SECRET_KEY": "sweep-secret-not-for-use"})
    for target in TRAVERSALS:
        status, body = raw_get(server.port, target)
        assert status in (400, 404), (target, status)
        assert b"SECRET_KEY" not in body and b"root:" not in body
    assert raw_get(server.port, b"/static/choir/room.js")[0] == 200, "real static files are still served"
    for target in [b"/ws/nothing/", b"/ws/rooms/a%20b/", b"/ws/rooms/lobby", b"/ws/rooms/%ff/", b"/ws/rooms/%C2%B2/"]:
        status, _ = raw_get(server.port, target, HANDSHAKE)
        assert 400 <= status < 500, (target, status)
    status, _ = raw_get(server.port, b"/ws/rooms/lobby/", HANDSHAKE + b"Origin: http://[::1\r\n")
    assert 400 <= status < 500, "an origin that cannot be parsed is refused (autobahn's 400, before Choir's check)"
    server.stop()
    errors = [line for line in server.log_path.read_text(errors="replace").splitlines() if '"level": "error"' in line or "Traceback" in line]
    assert not errors, errors[:5]


HOSTILE_HEADERS = [
    {"HTTP_HOST": "evil.example"},
    {"HTTP_HOST": "localhost:99999999999"},
    {"HTTP_COOKIE": "sessionid=%ff%00; csrftoken=" + "x" * 5000},
    {"HTTP_COOKIE": "sessionid=" + "a" * 40},
    {"HTTP_X_REQUEST_ID": "x" * 5000},
    {"HTTP_X_FORWARDED_FOR": "not-an-address, ::ffff:999.1.1.1"},
    {"HTTP_ACCEPT_LANGUAGE": "①;q=²," * 200},
    {"HTTP_RANGE": "bytes=99999999999999999999-"},
    {"HTTP_IF_MODIFIED_SINCE": "²"},
    {"HTTP_AUTHORIZATION": "Bearer ²"},
    {"HTTP_REFERER": "%ff"},
]


@pytest.mark.django_db
def test_hostile_headers_on_every_url_get_no_5xx_or_error_line(lobby, error_lines):
    client = Client(raise_request_exception=False)
    failures: list[str] = []
    for _, template in url_templates():
        url = _sample(template)
        for headers in HOSTILE_HEADERS:
            before = len(error_lines)
            for method in (client.get, client.post):
                response = method(url, **headers)
                if response.status_code >= 500:
                    failures.append(f"{url} {list(headers)} -> {response.status_code}")
            failures += [f"{url} {list(headers)} logged {_describe(r)}" for r in error_lines[before:]]
    assert not failures, "\n".join(failures[:40])


SOCKET_HEADERS = [
    [(b"origin", b"http://%ff")],
    [(b"origin", b"http://[::1")],
    [(b"origin", "http://①.example".encode())],
    [(b"cookie", b"sessionid=%ff%00")],
    [(b"cookie", b"sessionid=" + b"a" * 40)],
    [(b"cookie", b"\xff\xfe=\xff")],
    [(b"x-request-id", b"\x00" * 100)],
    [(b"x-forwarded-for", b"not-an-address")],
]


@pytest.mark.django_db(transaction=True)
async def test_hostile_handshake_headers_are_refused_or_served_cleanly(lobby, error_lines):
    from choirsite.asgi import application

    failures: list[str] = []
    for headers in SOCKET_HEADERS:
        before = len(error_lines)
        comm = WebsocketCommunicator(application, "/ws/rooms/lobby/", headers=headers)
        try:
            connected, _ = await comm.connect(timeout=5)
        except Exception as exc:  # noqa: BLE001  (an exception is the failure being looked for)
            failures.append(f"{headers} raised {exc!r}"[:200])
            continue
        if connected:
            await comm.disconnect()
        failures += [f"{headers} logged {_describe(r)}" for r in error_lines[before:]]
    assert not failures, "\n".join(failures)
