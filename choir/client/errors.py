"""What the client raises: a refusal of one request, or the end of the room for this client."""

from __future__ import annotations

# Close codes after which reconnecting cannot help (PROTOCOL.md, "Close codes").
FINAL_CLOSE_CODES = {
    4401: "the token is missing a right, expired or revoked",
    4403: "not allowed in this room",
    4404: "no such room",
    4410: "the room was closed or archived",
}


class ChoirError(Exception):
    """Base of everything the client raises."""


class Refused(ChoirError):
    """The server answered a request with an `error` frame (or the client gave up retrying it)."""

    def __init__(self, code: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


class Closed(ChoirError):
    """The server closed the socket with a code that reconnecting cannot change (4401, 4403, 4404, 4410)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed {code}: {reason or FINAL_CLOSE_CODES.get(code, '')}".rstrip(": "))
        self.code = code
        self.reason = reason
