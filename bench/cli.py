"""`python -m bench`: start the servers, run the scenarios, write the report."""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import resource
import shlex
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import procstat, report, scenarios
from bench.targets import (
    NODE_CACHE,
    ROOT,
    BareAsgi,
    Choir,
    Database,
    NodeSocketIO,
    NodeWs,
    PySocketIO,
    Raw,
    Redis,
    Target,
    TutorialChannels,
    Unavailable,
    node_modules,
    python_socketio_missing,
)

REFERENCES = ("raw", "asgi", "channels")
PEERS = ("ws", "socketio", "pysocketio")  # the servers people pick instead: Node ws, Node Socket.IO, python-socketio
ALL_TARGETS = ("choir", *REFERENCES, *PEERS)
ALL_SCENARIOS = ("fanout", "rooms", "chatter", "idle", "workers", "scaling", "stage")
DEFAULT_SCENARIOS = ("fanout", "rooms", "chatter", "idle", "workers")  # scaling and stage are long: --scaling, --stage

# Each preset is a set of flag defaults; flags given on the command line win.
PRESETS: dict[str, dict[str, Any]] = {
    # The full run: the sizes issue 5 asks for, under 10 minutes on 2 cores.
    "full": {
        "stage_listeners": 100000,
        "scaling_sizes": [10, 100, 1000, 10000],
        "scaling_rooms": [1, 10, 100, 1000],
        "scaling_load": 10000,
        "scaling_seconds": 3.0,
        "fanout_members": [200, 1000],
        "fanout_deliveries": [2000, 5000, 10000, 20000, 40000],
        "step_seconds": 3.0,
        "rooms": 100,
        "room_size": 10,
        "room_rate": 5.0,
        "room_seconds": 5.0,
        "chatter_senders": 50,
        "chatter_seconds": 8.0,
        "idle_levels": [10000, 20000],
        "idle_room_size": 100,
        "idle_settle": 2.0,
        "idle_max_seconds": 30,
        "client_processes": 4,
        "drain_timeout": 5.0,
        "reuse_servers": False,
        "reference_load": 10000,
        "workers_rooms": 4,
        "workers_members": 250,
        "workers_deliveries": [25000, 50000, 75000, 100000, 125000],
    },
    # For development on a shared machine: every scenario, a few seconds each.
    "small": {
        "stage_listeners": 5000,
        "scaling_sizes": [10, 100, 1000],
        "scaling_rooms": [1, 10, 100],
        "scaling_load": 2000,
        "scaling_seconds": 2.0,
        "fanout_members": [50],
        "fanout_deliveries": [500, 2000, 5000],
        "step_seconds": 2.0,
        "rooms": 10,
        "room_size": 5,
        "room_rate": 5.0,
        "room_seconds": 3.0,
        "chatter_senders": 10,
        "chatter_seconds": 3.0,
        "idle_levels": [1000],
        "idle_room_size": 100,
        "idle_settle": 1.0,
        "idle_max_seconds": 30,
        "client_processes": 2,
        "drain_timeout": 3.0,
        "reuse_servers": False,
        "reference_load": 2000,
        "workers_rooms": 4,
        "workers_members": 50,
        "workers_deliveries": [2000, 5000, 10000],
    },
    # CI smoke test: each server started once, every scenario touched.
    "quick": {
        "stage_listeners": 500,
        "scaling_sizes": [10, 100],
        "scaling_rooms": [1, 10],
        "scaling_load": 1000,
        "scaling_seconds": 1.5,
        "fanout_members": [20],
        "fanout_deliveries": [200, 1000],
        "step_seconds": 1.5,
        "rooms": 5,
        "room_size": 4,
        "room_rate": 5.0,
        "room_seconds": 2.0,
        "chatter_senders": 5,
        "chatter_seconds": 2.0,
        "idle_levels": [200],
        "idle_room_size": 100,
        "idle_settle": 0.5,
        "idle_max_seconds": 30,
        "client_processes": 2,
        "drain_timeout": 3.0,
        "reuse_servers": True,
        "reference_load": 1000,
        "workers_rooms": 2,
        "workers_members": 10,
        "workers_deliveries": [200, 1000],
    },
}

ABOUT = {
    "fanout": "One room; one member sends at a fixed rate, stepped up by offered deliveries per second "
    "(rate × members); "
    "every member, the sender included, should receive every message. A step passes with zero loss and p99 "
    "under the limit; stepping stops once a target loses messages or its p99 passes the stop limit.",
    "rooms": "Many small rooms, the first member of each sending at a fixed rate, phases spread over the period.",
    "chatter": "Many senders in one room, each sending its next message only when its own message frame (the "
    "acknowledgement) arrives; then the database is checked for seqs 1..N without gaps. Choir only: the "
    "references store nothing.",
    "scaling": "How cost grows: the same offered deliveries/s to one room of ever more members (one sender), "
    "then to ever more rooms of a few members (a sender each, phases spread); a point per size or count, "
    "one server per target for the whole scenario.",
    "stage": "A stage room: listeners connect across several Daphne workers from several loopback source "
    "addresses (127.0.0.2, …), then the room's one conductor, signed in, posts a few messages; connect time, "
    "RSS per socket over the workers' baseline, and for each post how long until the listeners had it "
    "(max: the last listener). Choir only.",
    "workers": "Choir on one Daphne worker, then on two: the same rooms (each room's first member sending, phases "
    "spread) and the same stepped load; the highest step each passes (zero loss, p99 under the limit) and its "
    "deliveries/s. The load generator runs on the same two cores, so it caps what two workers can show.",
    "idle": "Sockets opened (a bounded number of handshakes in flight per client process) and left idle, spread over "
    "rooms; memory of the serving processes over their baseline, and handshake rate. A Choir socket counts as "
    "open once its `hello` arrives.",
}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(allowed: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        bad = [n for n in names if n not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown: {', '.join(bad)} (choose from {', '.join(allowed)})")
        return names

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--preset", choices=sorted(PRESETS), default="full")
    p.add_argument("--quick", action="store_const", const="quick", dest="preset", help="the CI smoke preset")
    p.add_argument("--small", action="store_const", const="small", dest="preset", help="a few seconds per scenario")
    p.add_argument(
        "--targets",
        type=_names(ALL_TARGETS),
        help=f"every server to run (default: choir, the references and --peers); from {', '.join(ALL_TARGETS)}",
    )
    p.add_argument(
        "--peers",
        type=_names(("none", *PEERS)),
        default=list(PEERS),
        help="peers beside Choir and the references: ws (Node), socketio (Node), pysocketio (python), or none",
    )
    p.add_argument("--node-cache", type=Path, default=NODE_CACHE, help="where npm installs the Node peers' packages")
    p.add_argument(
        "--scenarios",
        type=_names(ALL_SCENARIOS),
        default=list(DEFAULT_SCENARIOS),
        help=f"from {', '.join(ALL_SCENARIOS)} (default: all but scaling)",
    )
    p.add_argument("--scaling", action="store_true", help="add the scaling scenario (scaling.png)")
    p.add_argument("--stage", action="store_true", help="add the stage scenario (Choir only; long)")
    p.add_argument("--stage-listeners", type=int, help="listeners in the stage room (full preset: 100,000)")
    p.add_argument("--stage-workers", type=int, help="Daphne workers for the stage (default: fit the fd limit)")
    p.add_argument("--stage-clients", type=int, help="load-generator processes, one loopback source address each")
    p.add_argument("--stage-posts", type=int, default=5, help="messages the conductor posts")
    p.add_argument("--stage-interval", type=float, default=10.0, help="seconds between the conductor's posts (each measured alone)")
    p.add_argument("--stage-max-seconds", type=float, default=600, help="stop connecting listeners after this long")
    p.add_argument("--scaling-sizes", type=_ints, help="room sizes for scaling, e.g. 10,100,1000,10000")
    p.add_argument("--scaling-rooms", type=_ints, help="numbers of rooms for scaling, e.g. 1,10,100,1000")
    p.add_argument("--scaling-room-size", type=int, default=10, help="members per room when the rooms multiply")
    p.add_argument("--scaling-load", type=int, help="offered deliveries/s at every scaling point")
    p.add_argument("--scaling-seconds", type=float)
    p.add_argument(
        "--scaling-targets",
        type=_names(ALL_TARGETS),
        default=["choir", *PEERS],
        help="which of --targets the scaling scenario runs on (default: Choir and the peers)",
    )
    p.add_argument("--fanout-members", type=_ints, help="room sizes, e.g. 200,1000")
    p.add_argument("--fanout-deliveries", type=_ints, help="offered deliveries/s per step (rate = this / members)")
    p.add_argument("--step-seconds", type=float)
    p.add_argument("--p99-limit-ms", type=float, default=100.0, help="a fan-out step passes under this p99")
    p.add_argument("--stop-p99-ms", type=float, default=1000.0, help="stop stepping once p99 passes this")
    p.add_argument("--reference-load", type=int, help="offered deliveries/s compared across targets")
    p.add_argument("--workers-counts", type=_ints, default=[1, 2], help="Daphne worker counts compared by 'workers'")
    p.add_argument("--workers-rooms", type=int, help="rooms in the workers scenario")
    p.add_argument("--workers-members", type=int, help="members per room in the workers scenario")
    p.add_argument("--workers-deliveries", type=_ints, help="offered deliveries/s per step in the workers scenario")
    p.add_argument("--rooms", type=int)
    p.add_argument("--room-size", type=int)
    p.add_argument("--room-rate", type=float, help="messages/s per room")
    p.add_argument("--room-seconds", type=float)
    p.add_argument("--chatter-senders", type=int)
    p.add_argument("--chatter-seconds", type=float)
    p.add_argument("--idle-levels", type=_ints, help="open sockets, e.g. 10000,20000")
    p.add_argument("--idle-room-size", type=int)
    p.add_argument("--idle-settle", type=float, help="seconds to wait before reading memory")
    p.add_argument("--idle-max-seconds", type=float, help="stop opening sockets on a target after this long")
    p.add_argument("--client-processes", type=int)
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight per client process")
    p.add_argument("--body-bytes", type=int, default=64)
    p.add_argument("--drain-timeout", type=float, help="seconds to wait after the last send before counting loss")
    p.add_argument("--reuse-servers", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--choir-workers", type=int, default=1, help="Daphne workers for Choir (manage.py serve --workers)")
    p.add_argument("--choir-log-level", default="WARNING")
    p.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL database to create the benchmark's own from",
    )
    p.add_argument("--db-name", default="choir_bench", help="dropped and created for each run")
    p.add_argument("--keep-db", action="store_true", help="leave the benchmark database after the run")
    p.add_argument("--profile", action="store_true", help="py-spy the Choir worker during fan-out")
    p.add_argument("--output", type=Path, default=ROOT / "bench-output")
    p.add_argument("--max-seconds", type=float, default=900, help="skip what is left after this long")
    return p


def options(argv: list[str] | None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    for flag in ("scaling", "stage"):
        if getattr(args, flag) and flag not in args.scenarios:
            args.scenarios.append(flag)
    if args.targets is None:
        args.targets = ["choir", *REFERENCES, *(p for p in args.peers if p != "none")]
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def server_env(args: argparse.Namespace, db: Database, redis: Redis, out: Path) -> dict[str, str]:
    # Nothing from the caller's Choir or Django settings leaks in (a test run's, say).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHOIR_", "DATABASE_", "DJANGO_")) and k not in {"REDIS_URL", "DEBUG", "SECRET_KEY"}
    }
    env.update(
        DATABASE_URL=db.url,
        REDIS_URL=redis.url,
        CHOIR_REDIS_PREFIX="bench",
        DEBUG="0",
        SECRET_KEY="bench-" + os.urandom(16).hex(),
        CHOIR_ACCESS_LOG="0",
        LOG_LEVEL=args.choir_log_level,
        # Every client shares 127.0.0.1 and sends far faster than a person.
        CHOIR_RATE_PER_SECOND="1000000",
        CHOIR_RATE_BURST="1000000",
        CHOIR_MAX_CONNECTIONS_PER_IP="1000000",
        CHOIR_HANDSHAKE_RATE="1000000",
        CHOIR_HANDSHAKE_BURST="1000000",
        CHOIR_VAR_DIR=str(out / "var"),
        PYTHONUNBUFFERED="1",
    )
    return env


def rooms_needed(args: argparse.Namespace) -> list[str]:
    slugs = [scenarios.fanout_room(n) for n in args.fanout_members]
    slugs += scenarios.many_rooms(max(args.rooms, args.workers_rooms)) + [scenarios.CHATTER_ROOM]
    slugs += scenarios.idle_rooms(math.ceil(max(args.idle_levels) / args.idle_room_size))
    if "scaling" in args.scenarios:
        slugs += [scenarios.scale_room(n) for n in args.scaling_sizes]
        slugs += scenarios.scale_rooms(max(args.scaling_rooms, default=0))
    return slugs


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    started = datetime.now(UTC)
    out = args.output / started.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    clock = time.monotonic()

    def log(line: str) -> None:
        line = f"[{time.monotonic() - clock:6.1f}s] {line}"
        print(line, flush=True)
        with open(out / "bench.log", "a") as f:
            f.write(line + "\n")

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by servers and clients
    notes: list[str] = []
    budget = scenarios.fd_budget() * (args.choir_workers if "choir" in args.targets else 1)
    if "idle" in args.scenarios and max(args.idle_levels) > budget:
        notes.append(
            f"idle levels capped at {budget:,} sockets: RLIMIT_NOFILE's hard limit here is {hard:,} per process "
            f"and cannot be raised without CAP_SYS_RESOURCE"
        )
        args.idle_levels = [min(level, budget) for level in args.idle_levels]
    modules = None
    skipped: dict[str, str] = {}  # peer -> why it did not run
    if {"ws", "socketio"} & set(args.targets):
        try:
            modules = node_modules(args.node_cache, out / "npm.log")
        except Unavailable as exc:
            skipped.update({t: f"Node peer skipped: {exc}" for t in args.targets if t in ("ws", "socketio")})
    if "pysocketio" in args.targets and (why := python_socketio_missing()):
        skipped["pysocketio"] = f"python-socketio peer skipped: {why}"
    for name, why in skipped.items():
        notes.append(f"{name}: {why}")
    args.targets = [t for t in args.targets if t not in skipped]
    for note in notes:
        log(f"note: {note}")

    results: dict[str, Any] = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "command": "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "preset": args.preset,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "choir_workers": args.choir_workers,
            "client_processes": args.client_processes,
            "body_bytes": args.body_bytes,
            "reference_load": args.reference_load,
            "p99_limit_ms": args.p99_limit_ms,
            "nofile_limit": hard,
            "notes": notes,
            "targets": args.targets,
            "skipped": skipped,
        },
        "scenarios": {},
    }
    redis = Redis(out)
    db = Database(args.database_url, args.db_name)
    meter = procstat.Meter()
    ctx: scenarios.Context | None = None
    failures = 0
    try:
        log(f"benchmark output: {out}")
        redis.start()
        env = server_env(args, db, redis, out)
        if "choir" in args.targets:
            log(f"creating database {db.name} and {len(rooms_needed(args))} rooms")
            db.recreate()
            db.setup(rooms_needed(args), env, out / "setup.log")
            if "stage" in args.scenarios:
                cookie = "sessionid=" + db.stage_conductor(scenarios.STAGE_ROOM, env, out / "setup.log")
        meter.watch("redis", procstat.pids(redis.proc.pid))  # type: ignore[union-attr]
        meter.watch("db", procstat.with_marker(f" {db.name} "))
        meter.watch("clients", procstat.pids())

        def make_target(name: str) -> Target:
            if name == "choir":
                return Choir(out, env, workers=args.choir_workers)
            if name == "raw":
                return Raw(out, env)
            if name == "asgi":
                return BareAsgi(out, env)
            if name == "ws":
                assert modules is not None
                return NodeWs(out, env, modules=modules)
            if name == "socketio":
                assert modules is not None
                return NodeSocketIO(out, env, modules=modules)
            if name == "pysocketio":
                return PySocketIO(out, env)
            return TutorialChannels(out, env, redis_url=redis.url)

        ctx = scenarios.Context(
            out=out,
            meter=meter,
            redis=redis,
            db=db,
            make_target=make_target,
            client_processes=args.client_processes,
            body_bytes=args.body_bytes,
            concurrency=args.concurrency,
            drain_timeout=args.drain_timeout,
            stop_p99_ms=args.stop_p99_ms,
            log=log,
            profile=args.profile,
            reuse=args.reuse_servers,
        )
        plan: list[tuple[str, str, dict[str, Any], Any]] = []
        if "fanout" in args.scenarios:
            for members in args.fanout_members:
                params = {
                    "members": members,
                    "deliveries": args.fanout_deliveries,
                    "step_seconds": args.step_seconds,
                    "p99_ms": args.p99_limit_ms,
                }
                plan.append((f"fanout-{members}", "fanout", params, scenarios.fanout))
        if "rooms" in args.scenarios:
            plan.append(
                (
                    "rooms",
                    "rooms",
                    {"count": args.rooms, "size": args.room_size, "rate": args.room_rate, "seconds": args.room_seconds},
                    scenarios.rooms,
                )
            )
        if "chatter" in args.scenarios and "choir" in args.targets:
            plan.append(
                (
                    "chatter",
                    "chatter",
                    {"senders": args.chatter_senders, "seconds": args.chatter_seconds},
                    scenarios.chatter,
                )
            )
        if "idle" in args.scenarios:
            plan.append(
                (
                    "idle",
                    "idle",
                    {
                        "levels": args.idle_levels,
                        "room_size": args.idle_room_size,
                        "settle": args.idle_settle,
                        "max_seconds": args.idle_max_seconds,
                    },
                    scenarios.idle,
                )
            )

        if "workers" in args.scenarios and "choir" in args.targets:
            plan.append(
                (
                    "workers",
                    "workers",
                    {
                        "counts": args.workers_counts,
                        "rooms": args.workers_rooms,
                        "members": args.workers_members,
                        "deliveries": args.workers_deliveries,
                        "step_seconds": args.step_seconds,
                        "p99_ms": args.p99_limit_ms,
                    },
                    functools.partial(scenarios.workers, make=lambda workers: Choir(out, env, workers=workers)),
                )
            )
        if "scaling" in args.scenarios:
            plan.append(
                (
                    "scaling",
                    "scaling",
                    {
                        "sizes": args.scaling_sizes,
                        "room_counts": args.scaling_rooms,
                        "room_size": args.scaling_room_size,
                        "load": args.scaling_load,
                        "seconds": args.scaling_seconds,
                    },
                    scenarios.scaling,
                )
            )

        if "stage" in args.scenarios and "choir" in args.targets:
            # Each worker holds at most what RLIMIT_NOFILE allows, less room to breathe; so does each client.
            per_process = max(1000, scenarios.fd_budget() - 1500)
            stage_workers = args.stage_workers or max(1, math.ceil(args.stage_listeners / per_process))
            # A client process reads every presence frame its sockets get while the crowd arrives;
            # 5,000 sockets each keeps the load generators from being the limit (20,000 with four: 213 s).
            stage_clients = args.stage_clients or max(2, math.ceil(args.stage_listeners / 5000))
            plan.append(
                (
                    "stage",
                    "stage",
                    {
                        "listeners": args.stage_listeners,
                        "workers": stage_workers,
                        "client_processes": stage_clients,
                        "posts": args.stage_posts,
                        "interval": args.stage_interval,
                        "max_seconds": args.stage_max_seconds,
                    },
                    functools.partial(
                        scenarios.stage, cookie=cookie, make=lambda workers: Choir(out, env, workers=workers)
                    ),
                )
            )

        for key, kind, params, run in plan:
            entry = results["scenarios"][key] = {"kind": kind, "about": ABOUT[kind], "params": params, "targets": {}}
            names = ["choir"] if kind in ("chatter", "stage", "workers") else args.targets
            if kind == "scaling":
                names = [t for t in args.targets if t in args.scaling_targets]
            for name in names:
                if time.monotonic() - clock > args.max_seconds:
                    notes.append(f"{key} on {name} skipped: the run passed --max-seconds {args.max_seconds:.0f}")
                    log(f"skipping {key} on {name}: out of time")
                    continue
                log(f"{key}: {name}")
                try:
                    entry["targets"][name] = run(ctx, name, **params)
                except Exception as exc:
                    failures += 1
                    notes.append(f"{key} on {name} failed: {exc!r}")
                    log(f"  {name} failed: {exc!r}")
                    with open(out / "bench.log", "a") as f:
                        traceback.print_exc(file=f)
    finally:
        if ctx is not None:
            for target in ctx.live.values():
                target.stop()
        meter.close()
        redis.stop()
        if "choir" in args.targets and not args.keep_db:
            try:
                db.drop()
            except Exception as exc:
                log(f"could not drop {db.name}: {exc!r}")
    results["meta"]["seconds"] = round(time.monotonic() - clock, 1)
    results["summary"] = report.summary_rows(results, args.reference_load)
    report.write(results, out)
    log(report.console(results))
    log(f"\nreport: {out / 'report.md'} (also {args.output / 'latest'})")
    return 1 if failures else 0
