"""Who is online in one room, kept sorted as people come and go, and the changes not yet announced."""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter


class Roster:
    """One room's online names: this process's sockets plus the presence store's view."""

    __slots__ = ("names", "online_names", "online_at", "sorted_names", "joined", "left", "flush_task")

    def __init__(self) -> None:
        self.names: Counter[str] = Counter()  # local sockets per display name
        self.online_names: set[str] = set()  # the presence store's view, cached briefly
        self.online_at = -1e9
        self.sorted_names: list[str] | None = None  # online_names and names, sorted; None = rebuild
        self.joined: set[str] = set()  # presence changes not yet announced
        self.left: set[str] = set()
        self.flush_task: asyncio.Task | None = None

    def set_online(self, names: set[str]) -> None:
        self.online_names = names
        self.sorted_names = None

    def sorted_online(self) -> list[str]:
        """Everyone online here or elsewhere, sorted; kept up to date, not re-sorted, as locals come and go."""
        if self.sorted_names is None:
            self.sorted_names = sorted(self.online_names | self.names.keys(), key=str.casefold)
        return self.sorted_names

    def arrive(self, name: str) -> bool:
        """Count one more local socket for `name`; True if it is the name's first here."""
        self.names[name] += 1
        if self.names[name] != 1:
            return False
        if self.sorted_names is not None and name not in self.online_names:
            bisect.insort(self.sorted_names, name, key=str.casefold)
        self._note(joined=name)
        return True

    def depart(self, name: str) -> bool:
        """Count one socket fewer for `name`; True if it was the name's last here."""
        self.names[name] -= 1
        if self.names[name] > 0:
            return False
        del self.names[name]
        if self.sorted_names is not None and name not in self.online_names:
            folded = name.casefold()
            at = bisect.bisect_left(self.sorted_names, folded, key=str.casefold)
            while at < len(self.sorted_names) and self.sorted_names[at].casefold() == folded:
                if self.sorted_names[at] == name:
                    del self.sorted_names[at]
                    break
                at += 1
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
            else:
                self.left.add(left)

    def take_changes(self) -> tuple[set[str], set[str]]:
        """The arrivals and departures since the last call."""
        joined, left = self.joined, self.left
        self.joined, self.left = set(), set()
        return joined, left
