"""CPU and memory of process groups, read from /proc while a scenario runs.

A group is a process tree (a server and the workers it spawns), a fixed set of
pids (client processes, redis-server), or every process whose command line
contains a marker (PostgreSQL backends serving the benchmark's database).
CPU is summed over the pids seen during a window, so a worker that forks
late is counted; RSS is sampled, and the peak of the sum is kept.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class Stat:
    ppid: int
    ticks: int
    rss: int  # bytes


def read_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    return Stat(ppid=int(fields[1]), ticks=int(fields[11]) + int(fields[12]), rss=int(fields[21]) * PAGE_BYTES)


def all_stats() -> dict[int, Stat]:
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = read_stat(int(name))
            if stat is not None:
                stats[int(name)] = stat
    return stats


def descendants(root: int, stats: dict[int, Stat]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


_cmdlines: dict[int, bytes] = {}


def cmdline_has(pid: int, marker: bytes) -> bool:
    if pid not in _cmdlines:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                _cmdlines[pid] = f.read()
        except OSError:
            _cmdlines[pid] = b""
    return marker in _cmdlines[pid]


Selector = Callable[[dict[int, Stat]], list[int]]


def tree(root: int) -> Selector:
    return lambda stats: descendants(root, stats)


def children_of(root: int) -> Selector:
    """The workers a supervisor spawned, without the supervisor itself."""
    return lambda stats: [pid for pid in descendants(root, stats) if pid != root]


def pids(*wanted: int) -> Selector:
    return lambda stats: [pid for pid in wanted if pid in stats]


def with_marker(marker: str) -> Selector:
    raw = marker.encode()
    return lambda stats: [pid for pid in stats if cmdline_has(pid, raw)]


@dataclass
class _Group:
    select: Selector
    ticks: dict[int, int] = field(default_factory=dict)  # last ticks seen per pid
    rss: list[tuple[float, int]] = field(default_factory=list)  # (time, summed RSS)


@dataclass(frozen=True, slots=True)
class Mark:
    at: float
    ticks: dict[str, dict[int, int]]


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_s: float
    peak_rss: int
    last_rss: int


class Meter:
    """Samples the groups every `interval` seconds on a background thread."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.groups: dict[str, _Group] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-meter", daemon=True)
        self._thread.start()

    def watch(self, name: str, select: Selector) -> None:
        with self._lock:
            self.groups[name] = _Group(select)
        self.sample()

    def unwatch(self, name: str) -> None:
        with self._lock:
            self.groups.pop(name, None)

    def sample(self) -> None:
        stats = all_stats()
        now = time.monotonic()
        with self._lock:
            for group in self.groups.values():
                total = 0
                for pid in group.select(stats):
                    group.ticks[pid] = max(group.ticks.get(pid, 0), stats[pid].ticks)
                    total += stats[pid].rss
                group.rss.append((now, total))
                if len(group.rss) > 20_000:  # bounded: keep the recent half
                    del group.rss[:10_000]

    def mark(self) -> Mark:
        self.sample()
        with self._lock:
            return Mark(time.monotonic(), {name: dict(g.ticks) for name, g in self.groups.items()})

    def since(self, mark: Mark) -> dict[str, Usage]:
        self.sample()
        usage = {}
        with self._lock:
            for name, group in self.groups.items():
                before = mark.ticks.get(name, {})
                ticks = sum(t - before.get(pid, 0) for pid, t in group.ticks.items())
                window = [rss for at, rss in group.rss if at >= mark.at] or [0]
                usage[name] = Usage(cpu_s=ticks / CLOCK_TICKS, peak_rss=max(window), last_rss=window[-1])
        return usage

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # a process vanishing mid-read must not stop the meter
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
