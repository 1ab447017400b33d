"""Whole numbers from requests: query strings, form fields, socket URLs.

`str.isdigit()` says yes to '²', '①' and '१२', which `int()` then refuses
(or reads as digits nobody typed), so every number a client sends goes
through here: ASCII digits only, within range, or a `NotAWholeNumber`
(a ValueError) whose message can be shown to the client as it is.
"""

from __future__ import annotations

import re

SEQ_MAX = 2**63 - 1  # the database's bigint: seqs, ids, page sizes
_DIGITS = re.compile(r"[0-9]+")


class NotAWholeNumber(ValueError):
    """A client sent something that is not a whole number in range."""


def whole_number(raw: str | None, name: str, *, minimum: int = 0, maximum: int = SEQ_MAX, default: int | None = None) -> int | None:
    """`raw` as an int in [minimum, maximum]; `default` when absent or empty.

    Surrounding spaces are forgiven (a hand-typed form field); signs, decimal
    points, exponents and non-ASCII digits are not.
    """
    if raw is None:
        return default
    text = raw.strip(" ")
    if text == "":
        return default
    # The length check first: int() of a megabyte of digits is slow (and
    # Python refuses past 4,300 digits anyway).
    if len(text) > len(str(maximum)) or not _DIGITS.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise NotAWholeNumber(f"'{name}' must be a whole number from {minimum} to {maximum}")
    return int(text)
