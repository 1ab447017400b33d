"""Structured logs: one JSON object per line, and the socket events that use them.

Every line carries `ts`, `level`, `logger`, `event` and the `request_id` of the
HTTP request or socket it belongs to, plus whatever fields the call passed in
`extra=`. Socket lifecycle lines (connect, disconnect, closing, refusal, fault)
always name the room and the user. Message bodies are never logged at INFO.

The last refusals are also kept for the conductor's desk (choir/desk.py): in
this process, and in a short Redis list when Redis is configured, because a
staff member's page is served by whichever worker the kernel picked.

This module is loaded by LOGGING before the app registry is ready: no models.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import logging
import os
import time
from typing import Any

from pythonjsonlogger import json as jsonlogger
from pythonjsonlogger.core import RESERVED_ATTRS

from choir import redis_clients
from choir.conf import settings
from choir.middleware import request_id, trusted_request_id

socket_log = logging.getLogger("choir.socket")


def _request_fields(line: dict[str, Any]) -> None:
    request = line.pop("request", None)
    if request is not None:
        # django.request logs 4xx/5xx after the middleware has let go of the
        # id, but hands over the request, which still carries it.
        line["request_id"] = getattr(request, "request_id", line["request_id"])
        line["method"] = getattr(request, "method", None)
        line["path"] = getattr(request, "path", None)


def _stamp_request_id(factory: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        # Read when the line is logged, in the request's or socket's own
        # context: a handler may format it later, or on another thread.
        record.choir_request_id = request_id.get()
        if record.levelno > logging.WARNING and record.name.startswith("django.security."):
            # Django logs every SuspiciousOperation (a Host header not in
            # ALLOWED_HOSTS, a 16 KB redirect target) at ERROR, though the
            # client gets a 400 and nothing on the server is wrong: ERROR is
            # kept for what an operator must fix. Per-exception loggers are
            # made on the fly, so no logger filter could catch them all.
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return record

    make.choir = True  # type: ignore[attr-defined]
    return make


if not getattr(logging.getLogRecordFactory(), "choir", False):
    logging.setLogRecordFactory(_stamp_request_id(logging.getLogRecordFactory()))


class JsonFormatter(jsonlogger.JsonFormatter):
    """One JSON object per line: what log shippers (journald, Loki, Vector) parse.

    python-json-logger gathers the record's `extra=` fields, formats the
    traceback and encodes; Choir adds its names (`ts`, `level`, `event`...)
    and the request id.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", ["levelname", "name", "process", "message"])
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger", "process": "pid", "message": "event", "exc_info": "exc"})
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "taskName", "choir_request_id"])
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        gathered: dict[str, Any] = {}
        super().add_fields(gathered, record, message_dict)
        # The same order on every line: who and what first, the extras after.
        log_data["ts"] = dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds")
        log_data["level"] = gathered.pop("level").lower()
        for key in ("logger", "pid", "event"):
            log_data[key] = gathered.pop(key)
        log_data["request_id"] = gathered.pop("request_id", record.__dict__.get("choir_request_id", "-"))
        exc = gathered.pop("exc", None)
        log_data.update(gathered)
        _request_fields(log_data)
        if exc is not None:  # last, after the fields it explains
            log_data["exc"] = exc


class LogfmtFormatter(JsonFormatter):
    """`key=value` pairs for people reading a terminal; the same fields as JSON.

    The fields come from the JSON formatter above; only the rendering is
    here. logfmter (0.0.x) builds its lines from its own list of record
    attributes, so matching the JSON line field for field would take more
    configuration than these few lines.
    """

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in log_data.items() if value is not None)


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return json.dumps(text)


# Socket events -----------------------------------------------------------------


def bind_socket(consumer: Any) -> str:
    """Give a socket its request id: a trusted proxy's X-Request-ID, else its conn id.

    The id is set in this task's context, so every line logged while serving
    the socket carries it, and kept on the consumer for lines logged on its
    behalf from other tasks (the hub closing a room).
    """
    rid = consumer.conn_id
    for name, value in consumer.scope.get("headers", ()):
        if name == b"x-request-id":
            rid = trusted_request_id(value.decode("latin-1")) or rid
            break
    consumer.request_id = rid
    request_id.set(rid)
    return rid


def socket_fields(consumer: Any, **more: Any) -> dict[str, Any]:
    """Who and where, for any line about this socket."""
    route = consumer.scope.get("url_route", {}).get("kwargs", {})
    fields = {
        "room": route.get("slug"),
        "user": getattr(consumer, "name", "") or None,
        "user_id": getattr(consumer, "user_id", None),
        "conn": getattr(consumer, "conn_id", None),
        "ip": getattr(consumer, "client_ip", None),
        "request_id": getattr(consumer, "request_id", None) or request_id.get(),
    }
    fields.update(more)
    return fields


def socket_event(consumer: Any, event: str, level: int = logging.INFO, **more: Any) -> None:
    """Log one socket lifecycle line (`connect`, `disconnect`, `closing`)."""
    socket_log.log(level, event, extra=socket_fields(consumer, **more))


def socket_fault(consumer: Any, **more: Any) -> None:
    """Log the exception being handled, tied to the socket (call from `except`)."""
    socket_log.error("fault", exc_info=True, extra=socket_fields(consumer, **more))


def refusal(consumer: Any, code: str, detail: str, **more: Any) -> None:
    """Log a refused frame or connection and keep it for the desk."""
    fields = socket_fields(consumer, code=code, detail=detail, **more)
    socket_log.info("refusal", extra=fields)
    recent_refusals.record(code=code, room=fields["room"], user=fields["user"])


def closing(consumer: Any, code: int, reason: str) -> None:
    """Log the server closing a socket; a 4xxx close refuses the socket, so the desk keeps it."""
    if code >= 4000:
        refusal(consumer, f"close_{code}", reason)
    else:
        socket_event(consumer, "closing", code=code, detail=reason)


# The desk's ring of recent refusals ------------------------------------------------


class RecentRefusals:
    """The last refusals: a bounded ring here, mirrored to a Redis list.

    Writes to Redis run on a worker thread and are capped per second, so a
    client flooding refusals costs this process a deque append, not a round trip.
    """

    KEEP = 50
    REDIS_WRITES_PER_SECOND = 20
    FORGET_AFTER = 86_400  # seconds: a day-old refusal is not "recent"

    def __init__(self) -> None:
        self.local: collections.deque[dict[str, Any]] = collections.deque(maxlen=self.KEEP)
        self._window = 0
        self._written = 0

    def key(self) -> str:
        prefix = settings.CHOIR_REDIS_PREFIX
        return f"{prefix}:recent-refusals"

    def record(self, *, code: str, room: str | None, user: str | None) -> None:
        entry = {"at": time.time(), "code": code, "room": room, "user": user, "pid": os.getpid()}
        self.local.appendleft(entry)
        if not settings.CHOIR_REDIS_URLS or not self._may_write():
            return
        try:
            asyncio.get_running_loop().run_in_executor(None, self._push, entry)
        except RuntimeError:  # no event loop: called from synchronous code
            self._push(entry)

    def latest(self, limit: int = KEEP) -> list[dict[str, Any]]:
        """Newest first; from Redis when configured (all processes), else this process."""
        if settings.CHOIR_REDIS_URLS:
            try:
                rows = self._redis().lrange(self.key(), 0, limit - 1)
                return [json.loads(row) for row in rows]
            except Exception:
                socket_log.warning("recent refusals unavailable from Redis; showing this process's", exc_info=True)
        return list(self.local)[:limit]

    def _may_write(self) -> bool:
        second = int(time.monotonic())
        if second != self._window:
            self._window, self._written = second, 0
        self._written += 1
        return self._written <= self.REDIS_WRITES_PER_SECOND

    def _push(self, entry: dict[str, Any]) -> None:
        try:
            with self._redis().pipeline(transaction=False) as pipe:
                pipe.lpush(self.key(), json.dumps(entry))
                pipe.ltrim(self.key(), 0, self.KEEP - 1)
                pipe.expire(self.key(), self.FORGET_AFTER)
                pipe.execute()
        except Exception:
            socket_log.debug("could not keep a refusal in Redis", exc_info=True)

    def _redis(self) -> Any:
        return redis_clients.sync_client(settings.CHOIR_REDIS_URLS[0])


recent_refusals = RecentRefusals()
