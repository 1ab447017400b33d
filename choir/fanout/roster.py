"""Who is online in one room, as this process knows it, and the changes not yet announced.

A stage room may hold 100,000 people, so nothing here is O(room) per
arrival: the set of everyone is kept up to date incrementally, and the
hello's sorted list is only its first `limit` names, kept sorted as people
come and go and rebuilt (one pass, no full sort) only when one of those
names leaves.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
from collections import Counter

from choir.conf import settings


class Roster:
    """One room's online names: this process's sockets plus what the presence store and other processes said."""

    __slots__ = (
        "limit",
        "names",
        "everyone",
        "read_at",
        "top",
        "joined",
        "left",
        "vanished",
        "flush_task",
        "crowd_task",
        "crowd_joined",
        "crowd_left",
        "crowd_online",
        "crowd_counts",
    )

    def __init__(self, limit: int | None = None) -> None:
        self.limit = settings.CHOIR_ONLINE_LIST_MAX if limit is None else limit
        self.names: Counter[str] = Counter()  # local sockets per display name
        self.everyone: set[str] = set()  # every name online here or elsewhere, as last known
        self.read_at = -1e9  # when the store was last read whole
        self.top: list[str] | None = []  # the first `limit` of everyone, sorted; None = rebuild
        self.joined: set[str] = set()  # local presence changes not yet announced
        self.left: set[str] = set()
        self.vanished: set[str] = set()
        self.flush_task: asyncio.Task | None = None
        # In a crowd, changes heard are summed up into one frame now and then (choir/fanout/batching.py).
        self.crowd_task: asyncio.Task | None = None
        self.crowd_joined: list[str] = []
        self.crowd_left: list[str] = []
        self.crowd_online = 0
        self.crowd_counts = [0, 0]  # arrivals and departures heard since the last crowd frame

    @property
    def count(self) -> int:
        return len(self.everyone)

    # Everyone ---------------------------------------------------------------

    def set_online(self, names: set[str]) -> None:
        """Replace the view with a whole read of the store (this process's own names always count)."""
        self.everyone = names | self.names.keys()
        self.top = None

    def add(self, names: set[str] | list[str]) -> None:
        for name in names:
            if name in self.everyone:
                continue
            self.everyone.add(name)
            top = self.top
            if top is None:
                continue
            if len(top) < self.limit:
                bisect.insort(top, name, key=str.casefold)
            elif name.casefold() < top[-1].casefold():
                bisect.insort(top, name, key=str.casefold)
                top.pop()

    def remove(self, names: set[str] | list[str]) -> None:
        """Forget names that left everywhere; a name this process still holds stays."""
        for name in names:
            if name not in self.everyone or name in self.names:
                continue
            self.everyone.discard(name)
            top = self.top
            if top is None:
                continue
            folded = name.casefold()
            at = bisect.bisect_left(top, folded, key=str.casefold)
            while at < len(top) and top[at].casefold() == folded:
                if top[at] == name:
                    del top[at]
                    if len(self.everyone) >= self.limit:
                        self.top = None  # a name from beyond the first `limit` moves up
                    break
                at += 1

    def sorted_online(self) -> list[str]:
        """The first `limit` names online here or elsewhere, in case-insensitive order."""
        if self.top is None:
            self.top = heapq.nsmallest(self.limit, self.everyone, key=str.casefold)
        return self.top

    # This process's sockets -------------------------------------------------

    def arrive(self, name: str) -> bool:
        """Count one more local socket for `name`; True if it is the name's first here."""
        self.names[name] += 1
        if self.names[name] != 1:
            return False
        self.add((name,))
        self._note(joined=name)
        return True

    def depart(self, name: str) -> bool:
        """Count one socket fewer for `name`; True if it was the name's last here.

        The name stays in `everyone` until the presence store says whether
        another process still holds it (`remove`, after the flush).
        """
        self.names[name] -= 1
        if self.names[name] > 0:
            return False
        del self.names[name]
        self._note(left=name)
        return True

    def _note(self, *, joined: str | None = None, left: str | None = None) -> None:
        # A name that comes and goes within one batch is announced not at all.
        if joined:
            if joined in self.left:
                self.left.discard(joined)
            else:
                self.joined.add(joined)
        if left:
            if left in self.joined:
                self.joined.discard(left)
                self.vanished.add(left)
            else:
                self.left.add(left)

    def take_changes(self) -> tuple[set[str], set[str], set[str]]:
        """Since the last call: the arrivals, the departures, and the names that came and went unannounced.

        The last may still be online through another process: the caller
        asks the store before it forgets them.
        """
        joined, left, vanished = self.joined, self.left, self.vanished
        self.joined, self.left, self.vanished = set(), set(), set()
        return joined, left, vanished
