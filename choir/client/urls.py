"""Where a room is: its socket URL and its history API, from whichever URL the caller has."""

from __future__ import annotations

import urllib.parse


def socket_url(url: str) -> str:
    """The room's socket URL from either it or the room's page URL (http://host/rooms/lobby/)."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path
    if path.startswith("/rooms/"):
        path = "/ws" + path
    if not path.endswith("/"):
        path += "/"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def history_url(ws_url: str) -> str | None:
    """The history API for the room behind a socket URL, or None if the URL is not Choir's shape."""
    parts = urllib.parse.urlsplit(ws_url)
    segments = parts.path.strip("/").split("/")
    if len(segments) < 3 or segments[-3:-1] != ["ws", "rooms"]:
        return None
    prefix = "/".join(segments[:-3])
    path = f"/{prefix}/api/rooms/{segments[-1]}/messages" if prefix else f"/api/rooms/{segments[-1]}/messages"
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))
