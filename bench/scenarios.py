"""The scenarios: each drives one target with a pool of client processes.

fan-out  one room of N members, one sender, rate stepped up
rooms    many rooms of a few members, a sender per room
chatter  many senders in one room, each waiting for its own ack (Choir only:
         the references store nothing)
idle     many open sockets: memory per socket and handshake rate
workers  the same rooms and steps on one Daphne worker, then two (Choir only)
stage    a stage room of up to 100,000 listeners over N Daphne workers, one
         conductor posting (Choir only, behind --stage)
scaling  how cost grows: one room of 10 → 10,000 members, then 1 → 1,000
         rooms of 10, at one offered load (behind --scaling: it is long)
"""

from __future__ import annotations

import math
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat
from bench.pool import ClientPool
from bench.stats import latency_summary, mb, merge_latencies, per
from bench.targets import ROOT, Database, Redis, Target


@dataclass
class Context:
    out: Path
    meter: procstat.Meter
    redis: Redis
    db: Database
    make_target: Callable[[str], Target]
    client_processes: int
    body_bytes: int
    concurrency: int
    drain_timeout: float
    stop_p99_ms: float
    log: Callable[[str], None]
    profile: bool = False
    reuse: bool = False  # keep each server for every scenario (quick runs)
    live: dict[str, Target] = field(default_factory=dict)


def fanout_room(members: int) -> str:
    return f"bench-fanout-{members}"


def many_rooms(count: int) -> list[str]:
    return [f"bench-room-{i:03d}" for i in range(count)]


def idle_rooms(count: int) -> list[str]:
    return [f"bench-idle-{i:03d}" for i in range(count)]


def scale_room(members: int) -> str:
    return f"bench-scale-size-{members}"


def scale_rooms(count: int) -> list[str]:
    return [f"bench-scale-room-{i:04d}" for i in range(count)]


CHATTER_ROOM = "bench-chatter"
STAGE_ROOM = "bench-stage"


@contextmanager
def running(ctx: Context, name: str) -> Iterator[Target]:
    """A fresh server for one scenario, or with `reuse` the one already running."""
    target = ctx.live.get(name) if ctx.reuse else None
    if target is None:
        if not ctx.reuse:
            ctx.redis.flush()
        target = ctx.make_target(name)
        target.start()
        if ctx.reuse:
            ctx.live[name] = target
    ctx.meter.watch("server", procstat.tree(target.pid))
    ctx.meter.watch("serving", target.serving())
    try:
        yield target
    finally:
        ctx.meter.unwatch("server")
        ctx.meter.unwatch("serving")
        if not ctx.reuse:
            target.stop()


@contextmanager
def clients(ctx: Context, target: Target, processes: int | None = None, lean: bool = False) -> Iterator[ClientPool]:
    pool = ClientPool(
        port=target.port,
        dialect=target.dialect,
        processes=processes or ctx.client_processes,
        body_bytes=ctx.body_bytes,
        concurrency=ctx.concurrency,
        lean=lean,
    )
    ctx.meter.watch("clients", procstat.pids(*pool.pids))
    try:
        yield pool
    finally:
        ctx.meter.unwatch("clients")
        pool.close()


def connect(
    pool: ClientPool, rooms: list[str], senders: dict[int, int], timeout: float = 120, deadline: float | None = None
) -> dict[str, Any]:
    """Open one socket per entry of `rooms`, spread over the workers round-robin.

    `senders` maps a global socket index to its sender id.
    """
    workers = len(pool)
    per_worker: list[dict[str, Any]] = [{"rooms": [], "senders": {}, "deadline": deadline} for _ in range(workers)]
    for index, room in enumerate(rooms):
        slot = per_worker[index % workers]
        if index in senders:
            slot["senders"][len(slot["rooms"])] = senders[index]
        slot["rooms"].append(room)
    replies = pool.call("connect", per_worker, timeout)
    reasons: dict[str, int] = {}
    for reply in replies:
        for reason, count in reply["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    opened = sum(r["opened"] for r in replies)
    start = min(r["start"] for r in replies)
    end = max(r["end"] for r in replies)
    # Stopped at the deadline: the rate is over the time spent connecting.
    end = min(end, deadline) if deadline is not None and reasons.get("deadline") else end
    return {
        "opened": opened,
        "failed": sum(r["failed"] for r in replies),
        "retries": sum(r["retries"] for r in replies),
        "reasons": reasons,
        "seconds": end - start,
    }


def measure_step(
    ctx: Context,
    pool: ClientPool,
    *,
    step: int,
    mode: str,
    rate: float,
    duration: float,
    stagger: int = 1,
) -> tuple[dict[str, Any], Any]:
    """Send one step's messages, wait for them to arrive, and measure."""
    mark = ctx.meter.mark()
    start_at = time.time() + 0.3
    sent_replies = pool.call_all(
        "send",
        {"step": step, "mode": mode, "rate": rate, "duration": duration, "start_at": start_at, "stagger": stagger},
        timeout=duration + 60,
    )
    sent: dict[str, int] = {}
    for reply in sent_replies:
        for room, count in reply["sent"].items():
            sent[room] = sent.get(room, 0) + count
    send_end = max(r["end"] for r in sent_replies)
    drained = pool.call_all(
        "drain", {"step": step, "expected": sent, "timeout": ctx.drain_timeout}, timeout=ctx.drain_timeout + 60
    )
    usage = ctx.meter.since(mark)
    latencies = merge_latencies(d["latencies"] for d in drained)
    summary, quantiles = latency_summary(latencies)
    expected = sum(d["expected"] for d in drained)
    received = sum(d["received"] for d in drained)
    last_recv = max((d["last_recv"] for d in drained if d["last_recv"]), default=send_end)
    active = max(last_recv, send_end) - start_at
    server_cpu = usage["server"].cpu_s
    row = {
        "messages_sent": sum(sent.values()),
        "expected": expected,
        "received": received,
        "lost": expected - received,
        "extra": sum(d["extra"] for d in drained),
        "out_of_order": sum(d["out_of_order"] for d in drained),
        "late": sum(d["late"] for d in drained),
        "errors": sum(d["errors"] for d in drained),
        "sockets_closed": sum(d["closed"] for d in drained),
        "seconds": round(active, 2),
        "deliveries_per_s": per(received, active),
        "latency_ms": summary,
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_pct": round(100 * server_cpu / active, 1) if active > 0 else None,
        "serving_peak_rss_mb": mb(usage["serving"].peak_rss),
        "server_peak_rss_mb": mb(usage["server"].peak_rss),
        "deliveries_per_cpu_s": per(received, server_cpu),
        # What the whole stack burns: the server, plus its Redis and PostgreSQL.
        "deliveries_per_stack_cpu_s": per(received, server_cpu + usage["redis"].cpu_s + usage["db"].cpu_s),
        "redis_cpu_s": round(usage["redis"].cpu_s, 2),
        "db_cpu_s": round(usage["db"].cpu_s, 2),
        "client_cpu_s": round(usage["clients"].cpu_s, 2),
        "latency_quantiles_ms": quantiles,
    }
    return row, sent


def _passes(row: dict[str, Any], p99_ms: float) -> bool:
    return row["lost"] == 0 and row["errors"] == 0 and row["latency_ms"]["p99"] < p99_ms


# Fan-out --------------------------------------------------------------------


def fanout(
    ctx: Context, name: str, *, members: int, deliveries: list[int], step_seconds: float, p99_ms: float
) -> dict[str, Any]:
    """One room of `members` sockets; one of them sends at rates stepped up by offered deliveries/s."""
    room = fanout_room(members)
    with running(ctx, name) as target, clients(ctx, target) as pool:
        conn = connect(pool, [room] * members, {0: 0})
        ctx.log(f"  {name}: {conn['opened']} members connected in {conn['seconds']:.1f}s ({conn['retries']} retried)")
        steps = []
        profiler = _Profiler(ctx, target, f"fanout-{members}") if ctx.profile and target.name == "choir" else None
        try:
            for step, offered in enumerate(deliveries):
                rate = offered / max(conn["opened"], 1)
                # At least ten messages a step, or a slow rate says nothing.
                duration = min(max(step_seconds, 10 / rate), 4 * step_seconds)
                row, _ = measure_step(ctx, pool, step=step, mode="fixed", rate=rate, duration=duration)
                row.update(
                    rate=round(rate, 2),
                    offered_deliveries_per_s=offered,
                    connections=conn["opened"],
                    passed=_passes(row, p99_ms),
                )
                steps.append(row)
                lat = row["latency_ms"]
                ctx.log(
                    f"  {name}: {rate:6.1f} msg/s -> {row['received']}/{row['expected']} lost {row['lost']} "
                    f"p50 {lat['p50']} p99 {lat['p99']} ms, cpu {row['server_cpu_pct']}%, "
                    f"{row['deliveries_per_cpu_s']} deliveries/cpu-s"
                )
                if row["lost"] or row["latency_ms"]["p99"] > ctx.stop_p99_ms:
                    break  # fallen behind: higher rates only measure the backlog
        finally:
            if profiler is not None:
                profiler.stop()
        passed = [s for s in steps if s["passed"]]
        return {
            "connections": conn["opened"],
            "connect_failed": conn["failed"],
            "connect_retries": conn["retries"],
            "connect_failures": conn["reasons"],
            "steps": steps,
            "max_rate": passed[-1]["rate"] if passed else 0,
            "max_deliveries_per_s": passed[-1]["offered_deliveries_per_s"] if passed else 0,
            "profile": profiler.summary if profiler is not None else None,
        }


# Many rooms -----------------------------------------------------------------


def rooms(ctx: Context, name: str, *, count: int, size: int, rate: float, seconds: float) -> dict[str, Any]:
    slugs = many_rooms(count)
    layout = [slug for slug in slugs for _ in range(size)]
    senders = {index * size: index for index in range(count)}  # the first member of each room sends
    with running(ctx, name) as target, clients(ctx, target) as pool:
        conn = connect(pool, layout, senders)
        ctx.log(f"  {name}: {conn['opened']} sockets in {count} rooms in {conn['seconds']:.1f}s")
        profiler = _Profiler(ctx, target, "rooms") if ctx.profile and target.name == "choir" else None
        try:
            row, _ = measure_step(ctx, pool, step=0, mode="fixed", rate=rate, duration=seconds, stagger=count)
        finally:
            if profiler is not None:
                profiler.stop()
        row["profile"] = profiler.summary if profiler is not None else None
        row.update(
            connections=conn["opened"],
            connect_failed=conn["failed"],
            connect_retries=conn["retries"],
            rate_per_room=rate,
        )
        lat = row["latency_ms"]
        ctx.log(
            f"  {name}: {row['received']}/{row['expected']} lost {row['lost']} p50 {lat['p50']} p99 {lat['p99']} ms"
        )
        return row


# Chatter --------------------------------------------------------------------


def chatter(ctx: Context, name: str, *, senders: int, seconds: float) -> dict[str, Any]:
    with running(ctx, name) as target, clients(ctx, target) as pool:
        before = ctx.db.room_seqs(CHATTER_ROOM) if target.stores else None
        conn = connect(pool, [CHATTER_ROOM] * senders, {i: i for i in range(senders)})
        profiler = _Profiler(ctx, target, "chatter") if ctx.profile and target.name == "choir" else None
        try:
            row, _ = measure_step(ctx, pool, step=0, mode="acked", rate=0, duration=seconds)
        finally:
            if profiler is not None:
                profiler.stop()
        row["profile"] = profiler.summary if profiler is not None else None
        row.update(connections=conn["opened"], connect_failed=conn["failed"], senders=senders)
    if target.stores:
        after = ctx.db.room_seqs(CHATTER_ROOM)
        stored = after["stored"] - (before or {}).get("stored", 0)
        row["stored"] = stored
        row["stored_per_s"] = per(stored, seconds)
        row["db"] = after
        row["stored_matches_sent"] = stored == row["messages_sent"]
        ctx.log(f"  {name}: {stored} stored ({row['stored_per_s']}/s), seqs gap-free: {after['gap_free']}")
    return row


# Idle -----------------------------------------------------------------------


def fd_budget() -> int:
    """Sockets one process can hold under this machine's RLIMIT_NOFILE hard limit."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 500


def idle(
    ctx: Context,
    name: str,
    *,
    levels: list[int],
    room_size: int,
    settle: float = 2.0,
    max_seconds: float = 600,
) -> dict[str, Any]:
    """Open sockets up to each level in turn; `max_seconds` bounds all the connecting for one target."""
    slugs = idle_rooms(math.ceil(max(levels) / room_size))
    results = []
    with running(ctx, name) as target, clients(ctx, target) as pool:
        time.sleep(settle / 2)
        baseline = ctx.meter.since(ctx.meter.mark())["serving"].last_rss
        deadline = time.time() + max_seconds
        profiler = _Profiler(ctx, target, "idle") if ctx.profile and target.name == "choir" else None
        total = 0
        for level in levels:
            # Past the deadline the level is still reported, with what was reached.
            batch = [slugs[i // room_size] for i in range(total, level)]
            mark = ctx.meter.mark()
            conn = connect(pool, batch, {}, timeout=max_seconds + 120, deadline=deadline)
            connect_usage = ctx.meter.since(mark)
            total += conn["opened"]
            time.sleep(settle)  # presence batches and buffers settle
            rss = ctx.meter.since(ctx.meter.mark())["serving"].last_rss
            row = {
                "sockets": total,
                "requested": level,
                "connect_failed": conn["failed"] - conn["reasons"].get("deadline", 0),
                "not_tried": conn["reasons"].get("deadline", 0),
                "connect_retries": conn["retries"],
                "connect_failures": conn["reasons"],
                "connect_seconds": round(conn["seconds"], 2),
                "handshakes_per_s": per(conn["opened"], conn["seconds"]),
                "handshake_cpu_s": round(connect_usage["server"].cpu_s, 2),
                "handshakes_per_cpu_s": per(conn["opened"], connect_usage["server"].cpu_s),
                "baseline_rss_mb": mb(baseline),
                "serving_rss_mb": mb(rss),
                "kb_per_socket": round((rss - baseline) / max(total, 1) / 1024, 1),
                "rss_mb_per_1000": round((rss - baseline) / max(total, 1) * 1000 / 1_048_576, 1),
            }
            results.append(row)
            ctx.log(
                f"  {name}: {total} sockets, {row['handshakes_per_s']} handshakes/s, "
                f"{row['kb_per_socket']} KB/socket (failed {row['connect_failed']}, not tried {row['not_tried']}, "
                f"retried {conn['retries']})"
            )
        if profiler is not None:
            profiler.stop()
    return {"levels": results, "profile": profiler.summary if profiler is not None else None}


# How cost grows ---------------------------------------------------------------


def scaling(
    ctx: Context,
    name: str,
    *,
    sizes: list[int],
    room_counts: list[int],
    room_size: int,
    load: int,
    seconds: float,
) -> dict[str, Any]:
    """The same offered deliveries/s spread over ever larger rooms, then over ever more rooms.

    One server per target for the whole scenario (a fresh one per point would
    double its length); each point has its own client processes, and the
    server gets a second to see the last point's sockets go.
    """
    by_size: list[dict[str, Any]] = []
    by_rooms: list[dict[str, Any]] = []
    with running(ctx, name) as target:
        points = [(size, [scale_room(size)] * size, {0: 0}, 1, by_size) for size in sizes]
        for count in room_counts:
            slugs = scale_rooms(count)
            layout = [slug for slug in slugs for _ in range(room_size)]
            points.append((count, layout, {i * room_size: i for i in range(count)}, count, by_rooms))
        for x, layout, senders, rooms_, series in points:
            with clients(ctx, target) as pool:
                conn = connect(pool, layout, senders)
                members = conn["opened"] / rooms_
                rate = load / max(conn["opened"], 1)  # per sending room
                duration = min(max(seconds, 10 / rate), 4 * seconds)
                row, _ = measure_step(ctx, pool, step=0, mode="fixed", rate=rate, duration=duration, stagger=rooms_)
                row.update(
                    x=x,
                    rooms=rooms_,
                    members=round(members, 1),
                    rate=round(rate, 2),
                    connections=conn["opened"],
                    connect_failed=conn["failed"],
                    connect_seconds=round(conn["seconds"], 2),
                )
                row.pop("latency_quantiles_ms", None)
                series.append(row)
                lat = row["latency_ms"]
                ctx.log(
                    f"  {name}: {rooms_} room(s) of {members:.0f}, {rate:.1f} msg/s each -> "
                    f"{row['received']}/{row['expected']} lost {row['lost']} p99 {lat['p99']} ms, "
                    f"{row['deliveries_per_cpu_s']} deliveries/cpu-s"
                )
            time.sleep(1.0)
    return {"by_size": by_size, "by_rooms": by_rooms}


# Workers ------------------------------------------------------------------------


def workers(
    ctx: Context,
    name: str,
    *,
    counts: list[int],
    rooms: int,
    members: int,
    deliveries: list[int],
    step_seconds: float,
    p99_ms: float,
    make: Callable[[int], Target],
) -> dict[str, Any]:
    """The same rooms and stepped load on one Daphne worker, then on more: what another process buys.

    Each room's first member sends, phases spread; members land on workers
    as the kernel spreads the connections (SO_REUSEPORT), so every worker
    hears every room's messages once and writes to its own share.
    """
    layout = [slug for slug in many_rooms(rooms) for _ in range(members)]
    senders = {index * members: index for index in range(rooms)}
    runs = []
    for count in counts:
        ctx.redis.flush()
        target = make(count)
        target.start()
        ctx.meter.watch("server", procstat.tree(target.pid))
        ctx.meter.watch("serving", target.serving())
        try:
            time.sleep(1.0)
            # Lean listeners: with `websockets` the load generator took a core
            # of the two, and one worker against two measured only that.
            with clients(ctx, target, lean=True) as pool:
                conn = connect(pool, layout, senders)
                ctx.log(f"  {name}: {count} worker(s), {conn['opened']} members in {rooms} rooms")
                steps = []
                for step, offered in enumerate(deliveries):
                    rate = offered / max(conn["opened"], 1)  # messages/s per room's sender
                    row, _ = measure_step(
                        ctx, pool, step=step, mode="fixed", rate=rate, duration=step_seconds, stagger=rooms
                    )
                    row.update(rate=round(rate, 2), offered_deliveries_per_s=offered, passed=_passes(row, p99_ms))
                    steps.append(row)
                    lat = row["latency_ms"]
                    ctx.log(
                        f"  {name}: {count} worker(s), {offered:,}/s offered -> {row['deliveries_per_s']:,}/s "
                        f"lost {row['lost']} p99 {lat['p99']} ms, server cpu {row['server_cpu_pct']}%, "
                        f"clients {row['client_cpu_s']} cpu-s"
                    )
                    if row["lost"] or lat["p99"] > ctx.stop_p99_ms:
                        break
        finally:
            ctx.meter.unwatch("server")
            ctx.meter.unwatch("serving")
            target.stop()
        passed = [s for s in steps if s["passed"]]
        top = passed[-1] if passed else None
        runs.append(
            {
                "workers": count,
                "connections": conn["opened"],
                "steps": steps,
                "max_deliveries_per_s": top["deliveries_per_s"] if top else 0,
                "deliveries_per_cpu_s_at_max": top["deliveries_per_cpu_s"] if top else None,
                "server_cpu_pct_at_max": top["server_cpu_pct"] if top else None,
            }
        )
    base = runs[0]["max_deliveries_per_s"] or None
    for run in runs:
        run["throughput_ratio"] = round(run["max_deliveries_per_s"] / base, 2) if base else None
    return {"by_workers": runs}


# The stage ----------------------------------------------------------------------


def loopback_sources(count: int) -> list[str]:
    """127.0.0.2, 127.0.0.3, …: each source address has an ephemeral port range of its own."""
    return [f"127.0.0.{2 + i}" for i in range(count)]


def stage(
    ctx: Context,
    name: str,
    *,
    listeners: int,
    workers: int,
    client_processes: int,
    posts: int,
    interval: float,
    max_seconds: float,
    cookie: str,
    make: Callable[[int], Target],
) -> dict[str, Any]:
    """Listeners fill a stage room across `workers` Daphne processes; the conductor posts `posts` times.

    Reports connect time and rate, RSS per socket over the workers' baseline,
    and for each post how long the listeners took to have it (p50, p99, and
    max: the last listener).
    """
    ctx.redis.flush()
    target = make(workers)
    target.start()
    ctx.meter.watch("server", procstat.tree(target.pid))
    ctx.meter.watch("serving", target.serving())
    sources = loopback_sources(client_processes)
    listeners_pool = conductor = None
    try:
        time.sleep(1.0)
        baseline = ctx.meter.since(ctx.meter.mark())["serving"].last_rss
        listeners_pool = ClientPool(
            port=target.port,
            dialect=target.dialect,
            processes=client_processes,
            body_bytes=ctx.body_bytes,
            concurrency=ctx.concurrency,
            sources=sources,
            per_message=True,
            lean=True,  # listeners only read: bench/lean.py costs them a fraction of `websockets`
        )
        ctx.meter.watch("clients", procstat.pids(*listeners_pool.pids))
        mark = ctx.meter.mark()
        conn = connect(
            listeners_pool,
            [STAGE_ROOM] * listeners,
            {},
            timeout=max_seconds + 300,
            deadline=time.time() + max_seconds,
        )
        connect_usage = ctx.meter.since(mark)
        ctx.log(
            f"  {name}: {conn['opened']:,} listeners on {workers} workers in {conn['seconds']:.1f}s "
            f"(failed {conn['failed'] - conn['reasons'].get('deadline', 0)}, not tried "
            f"{conn['reasons'].get('deadline', 0)}, retried {conn['retries']})"
        )
        time.sleep(3.0)  # presence batches settle before memory is read
        settled = ctx.meter.since(ctx.meter.mark())
        conductor = ClientPool(
            port=target.port,
            dialect=target.dialect,
            processes=1,
            body_bytes=ctx.body_bytes,
            concurrency=1,
            sources=["127.0.0.1"],
            cookie=cookie,
        )
        voice = connect(conductor, [STAGE_ROOM], {0: 0}, timeout=60)
        if not voice["opened"]:
            raise RuntimeError(f"the conductor could not connect: {voice['reasons']}")
        mark = ctx.meter.mark()
        start_at = time.time() + 0.5
        step = {"step": 0, "mode": "fixed", "rate": 1 / interval, "duration": posts * interval, "stagger": 1}
        listeners_pool.call_all("send", {**step, "start_at": start_at}, timeout=60)  # arms the step; no senders
        sent = conductor.call_all("send", {**step, "start_at": start_at}, timeout=posts * interval + 60)
        expected = {STAGE_ROOM: sum(r["sent"].get(STAGE_ROOM, 0) for r in sent)}
        drained = listeners_pool.call_all(
            "drain", {"step": 0, "expected": expected, "timeout": max(ctx.drain_timeout, 30)}, timeout=120
        )
        conductor.call_all("drain", {"step": 0, "expected": expected, "timeout": 5}, timeout=60)
        usage = ctx.meter.since(mark)
        per_post = []
        for n in range(expected[STAGE_ROOM]):
            merged = merge_latencies(d["by_message"].get(n, b"") for d in drained)
            summary, _ = latency_summary(merged)
            per_post.append({"post": n + 1, "listeners_reached": len(merged), **summary})
        all_latencies = merge_latencies(d["latencies"] for d in drained)
        overall, _ = latency_summary(all_latencies)
        received = sum(d["received"] for d in drained)
        want = sum(d["expected"] for d in drained)
        rss = settled["serving"].last_rss
        opened = conn["opened"]
        row = {
            "listeners": opened,
            "requested": listeners,
            "workers": workers,
            "client_processes": client_processes,
            "sources": sources,
            "connect_failed": conn["failed"] - conn["reasons"].get("deadline", 0),
            "not_tried": conn["reasons"].get("deadline", 0),
            "connect_retries": conn["retries"],
            "connect_failures": conn["reasons"],
            "connect_seconds": round(conn["seconds"], 1),
            "handshakes_per_s": per(opened, conn["seconds"]),
            "connect_server_cpu_s": round(connect_usage["server"].cpu_s, 1),
            "connect_client_cpu_s": round(connect_usage["clients"].cpu_s, 1),
            "baseline_rss_mb": mb(baseline),
            "serving_rss_mb": mb(rss),
            "kb_per_socket": round((rss - baseline) / max(opened, 1) / 1024, 1),
            "client_rss_mb": mb(settled["clients"].last_rss),
            "posts": expected[STAGE_ROOM],
            "interval_s": interval,
            "expected": want,
            "received": received,
            "lost": want - received,
            "sockets_closed": sum(d["closed"] for d in drained),
            "per_post_ms": per_post,
            "latency_ms": overall,
            "post_server_cpu_s": round(usage["server"].cpu_s, 2),
            "deliveries_per_cpu_s": per(received, usage["server"].cpu_s),
        }
        for p in per_post:
            ctx.log(
                f"  {name}: post {p['post']}: {p['listeners_reached']:,} listeners, p50 {p['p50']} p99 {p['p99']} "
                f"max {p['max']} ms"
            )
        return row
    finally:
        for pool in (conductor, listeners_pool):
            if pool is not None:
                pool.close()
        ctx.meter.unwatch("clients")
        ctx.meter.unwatch("server")
        ctx.meter.unwatch("serving")
        target.stop()


# Profiling ------------------------------------------------------------------


class _Profiler:
    """py-spy on one Choir worker for the length of a scenario."""

    def __init__(self, ctx: Context, target: Target, label: str) -> None:
        self.summary: dict[str, Any] | None = None
        self.proc: subprocess.Popen | None = None
        pyspy = shutil.which("py-spy") or str(Path(__import__("sys").executable).with_name("py-spy"))
        worker = target.serving()(procstat.all_stats())
        if not Path(pyspy).exists() or not worker:
            ctx.log("  profile: py-spy not found (pip install -r requirements-dev.txt)")
            return
        self.raw = ctx.out / f"profile-choir-{label}.txt"
        self.proc = subprocess.Popen(
            [
                pyspy,
                "record",
                "--pid",
                str(worker[0]),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(self.raw),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return
        if self.raw.exists():
            self.summary = summarise_profile(self.raw.read_text())
            self.summary["file"] = self.raw.name


def summarise_profile(collapsed: str, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count

    def share(table: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(table.items(), key=lambda kv: -kv[1])[:top]
        return [(frame, round(100 * n / total, 1)) for frame, n in ranked] if total else []

    return {"samples": total, "self_pct": share(own), "inclusive_pct": share(inclusive)}


def _short(frame: str) -> str:
    # "send (channels/generic/websocket.py:123)" -> keep function and file, drop the line number.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name
