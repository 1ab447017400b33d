"""Writing results: results.json, report.md and latency.png, plus a console table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench.stats import fmt, ratio

# Everything Choir is set beside: the references (Python, same machine), then the peers.
REFERENCES = ("raw", "asgi", "channels", "ws", "socketio", "pysocketio")
LABELS = {
    "choir": "Choir",
    "raw": "raw websockets",
    "asgi": "bare ASGI/Daphne",
    "channels": "Channels tutorial",
    "ws": "Node ws",
    "socketio": "Node Socket.IO",
    "pysocketio": "python-socketio/uvicorn",
}
COLOURS = {
    "choir": "tab:red",
    "raw": "tab:green",
    "asgi": "tab:blue",
    "channels": "tab:orange",
    "ws": "tab:purple",
    "socketio": "tab:brown",
    "pysocketio": "tab:olive",
}


def _present(results: dict[str, Any]) -> list[str]:
    """The references and peers that ran in any scenario, in a fixed order."""
    seen = {t for scenario in results["scenarios"].values() for t in scenario["targets"]}
    return [ref for ref in REFERENCES if ref in seen]


def _at_load(steps: list[dict[str, Any]], load: int) -> dict[str, Any] | None:
    return next((s for s in steps if s["offered_deliveries_per_s"] == load), None)


def summary_rows(results: dict[str, Any], reference_load: int) -> list[dict[str, Any]]:
    """Each headline figure for every target, with Choir's ratio to each reference."""
    rows: list[dict[str, Any]] = []

    def add(scenario: str, metric: str, better: str, values: dict[str, Any]) -> None:
        row = {"scenario": scenario, "metric": metric, "better": better, "values": values, "ratios": {}}
        for ref in REFERENCES:
            if ref in values:
                row["ratios"][ref] = ratio(values.get("choir"), values.get(ref))
        rows.append(row)

    for key, scenario in results["scenarios"].items():
        targets = scenario["targets"]
        kind = scenario["kind"]
        if kind == "fanout":
            add(
                key,
                "highest msg/s with zero loss, p99 < limit",
                "higher",
                {t: r["max_rate"] for t, r in targets.items()},
            )
            at = {t: _at_load(r["steps"], reference_load) for t, r in targets.items()}
            add(
                key,
                f"deliveries per server CPU-s at {reference_load:,}/s offered",
                "higher",
                {t: s and s["deliveries_per_cpu_s"] for t, s in at.items()},
            )
            add(
                key,
                f"p50 ms at {reference_load:,}/s offered",
                "lower",
                {t: s and s["latency_ms"]["p50"] for t, s in at.items()},
            )
            add(
                key,
                f"p99 ms at {reference_load:,}/s offered",
                "lower",
                {t: s and s["latency_ms"]["p99"] for t, s in at.items()},
            )
            add(key, f"lost at {reference_load:,}/s offered", "lower", {t: s and s["lost"] for t, s in at.items()})
            best = {
                t: max((s["deliveries_per_cpu_s"] or 0 for s in r["steps"] if s["lost"] == 0), default=None)
                for t, r in targets.items()
            }
            add(key, "best deliveries per server CPU-s (any zero-loss step)", "higher", best)
        elif kind == "rooms":
            add(key, "lost", "lower", {t: r["lost"] for t, r in targets.items()})
            add(key, "p99 ms", "lower", {t: r["latency_ms"]["p99"] for t, r in targets.items()})
            add(
                key, "deliveries per server CPU-s", "higher", {t: r["deliveries_per_cpu_s"] for t, r in targets.items()}
            )
        elif kind == "chatter":
            add(
                key,
                "stored messages/s (acked, PostgreSQL)",
                "higher",
                {t: r.get("stored_per_s") for t, r in targets.items()},
            )
            add(
                key,
                "seqs gap-free in the database",
                "yes",
                {t: r.get("db", {}).get("gap_free") for t, r in targets.items()},
            )
        elif kind == "stage":
            for t, r in targets.items():
                where = f"{r['listeners']:,} listeners, {r['workers']} workers"
                add(key, f"seconds to connect {where}", "lower", {t: r["connect_seconds"]})
                add(key, "handshakes/s", "higher", {t: r["handshakes_per_s"]})
                add(key, "KB RSS per socket (workers)", "lower", {t: r["kb_per_socket"]})
                add(key, "lost", "lower", {t: r["lost"]})
                for label, q in (("p50", "p50"), ("p99", "p99"), ("last listener", "max")):
                    worst = max((p[q] for p in r["per_post_ms"]), default=None)
                    add(key, f"{label} ms, worst of {r['posts']} posts", "lower", {t: worst})
        elif kind == "workers":
            for t, r in targets.items():
                for run in r["by_workers"]:
                    where = f"{run['workers']} worker(s)"
                    add(key, f"highest deliveries/s passed, {where}", "higher", {t: run["max_deliveries_per_s"]})
                    add(key, f"throughput against one worker, {where}", "higher", {t: run["throughput_ratio"]})
                    add(key, f"deliveries per server CPU-s at that step, {where}", "higher", {t: run["deliveries_per_cpu_s_at_max"]})
        elif kind == "scaling":
            size = scenario["params"].get("room_size", 10)
            for series, label in (("by_size", "one room of {:,}"), ("by_rooms", "{:,} room(s) of " + str(size))):
                xs = sorted({p["x"] for r in targets.values() for p in r[series]})
                for x in xs:
                    points = {t: next((p for p in r[series] if p["x"] == x), None) for t, r in targets.items()}
                    # A point where nothing arrived (no sender left, say) has no figure, not a zero.
                    points = {t: p if p and p["received"] else None for t, p in points.items()}
                    where = label.format(x)
                    add(
                        key,
                        f"deliveries per server CPU-s, {where}",
                        "higher",
                        {t: p and p["deliveries_per_cpu_s"] for t, p in points.items()},
                    )
                    add(key, f"p99 ms, {where}", "lower", {t: p and p["latency_ms"]["p99"] for t, p in points.items()})
                    add(key, f"lost, {where}", "lower", {t: p and p["lost"] for t, p in points.items()})
        elif kind == "idle":
            levels = max((len(r["levels"]) for r in targets.values()), default=0)
            for i in range(levels):
                per_level = {t: r["levels"][i] for t, r in targets.items() if len(r["levels"]) > i}
                sockets = per_level.get("choir", next(iter(per_level.values())))["sockets"]
                add(
                    key,
                    f"KB RSS per socket at {sockets:,} sockets",
                    "lower",
                    {t: v["kb_per_socket"] for t, v in per_level.items()},
                )
                add(
                    key,
                    f"handshakes/s up to {sockets:,} sockets",
                    "higher",
                    {t: v["handshakes_per_s"] for t, v in per_level.items()},
                )
    return rows


def _with_ratio(values: dict[str, Any], ratios: dict[str, Any], ref: str) -> str:
    if ref not in values:
        return "—"
    ratio_ = ratios.get(ref)
    return fmt(values[ref]) + (f" (×{fmt(ratio_)})" if ratio_ is not None else "")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


STEP_HEADER = [
    "target",
    "msg/s",
    "conns",
    "sent",
    "expected",
    "received",
    "lost",
    "deliveries/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "server CPU s",
    "CPU %",
    "peak RSS MB",
    "deliveries/CPU-s",
    "redis CPU s",
    "db CPU s",
    "client CPU s",
]


def _step_cells(target: str, s: dict[str, Any]) -> list[Any]:
    lat = s["latency_ms"]
    return [
        LABELS.get(target, target),
        s.get("rate", s.get("rate_per_room")),
        s.get("connections"),
        s["messages_sent"],
        s["expected"],
        s["received"],
        s["lost"],
        s["deliveries_per_s"],
        lat["p50"],
        lat["p90"],
        lat["p99"],
        lat["max"],
        s["server_cpu_s"],
        s["server_cpu_pct"],
        s["serving_peak_rss_mb"],
        s["deliveries_per_cpu_s"],
        s["redis_cpu_s"],
        s["db_cpu_s"],
        s["client_cpu_s"],
    ]


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [f"# Choir benchmark, {meta['started']}", ""]
    out.append(
        f"{meta['cpus']} CPUs, Python {meta['python']}, preset `{meta['preset']}`, "
        f"{meta['choir_workers']} Choir worker(s), "
        f"{meta['client_processes']} client processes, bodies of {meta['body_bytes']} bytes, "
        f"run time {meta.get('seconds', 0):.0f} s. Command: `{meta['command']}`"
    )
    out += [
        "",
        "Choir runs as `manage.py serve` on PostgreSQL and the Redis layer, storing every message; the "
        "references and peers store nothing. Ratios are Choir / other server: above 1 is better for Choir "
        "where higher is better, below 1 where lower is better. Server CPU and RSS cover the server's process tree "
        "(RSS: the serving processes only); redis and db CPU are the benchmark's own redis-server and "
        "PostgreSQL backends.",
        "",
    ]
    if meta.get("notes"):
        out += [f"- {note}" for note in meta["notes"]] + [""]
    out += [
        "## Summary: Choir against each reference and peer",
        "",
        "Each cell: the figure, and (×ratio) Choir / that server.",
        "",
    ]
    present = _present(results)
    rows = []
    for row in results["summary"]:
        v, r = row["values"], row["ratios"]
        rows.append(
            [
                row["scenario"],
                row["metric"],
                row["better"],
                v.get("choir"),
                *[_with_ratio(v, r, ref) for ref in present],
            ]
        )
    header = ["scenario", "figure", "better", "Choir", *[LABELS[ref] for ref in present]]
    out += [_table(header, rows), "", "![latency](latency.png)", ""]

    for key, scenario in results["scenarios"].items():
        kind, params, targets = scenario["kind"], scenario["params"], scenario["targets"]
        out += [
            f"## {key}",
            "",
            scenario["about"],
            "",
            "Parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()),
            "",
        ]
        if kind == "fanout":
            cells = []
            for t, r in targets.items():
                cells += [_step_cells(t, s) + [s["passed"]] for s in r["steps"]]
            out.append(_table(STEP_HEADER + ["passed"], cells))
            out += [
                "",
                "Highest rate passed: "
                + ", ".join(
                    f"{LABELS.get(t, t)} {fmt(r['max_rate'])} msg/s ({fmt(r['max_deliveries_per_s'])} deliveries/s)"
                    for t, r in targets.items()
                ),
                "",
            ]
            for t, r in targets.items():
                if r.get("connect_failed") or r.get("connect_retries"):
                    out.append(
                        f"{LABELS.get(t, t)}: {r.get('connect_retries', 0)} handshakes retried, "
                        f"{r['connect_failed']} failed for good: {r['connect_failures']}"
                    )
        elif kind in ("rooms", "chatter"):
            out.append(_table(STEP_HEADER, [_step_cells(t, r) for t, r in targets.items()]))
            if kind == "chatter":
                for t, r in targets.items():
                    if "db" in r:
                        db = r["db"]
                        out += [
                            "",
                            f"{LABELS.get(t, t)}: {fmt(r['stored'])} messages stored in {params['seconds']} s = "
                            f"**{fmt(r['stored_per_s'])} stored/s**; database: last_seq {db['last_seq']}, "
                            f"{db['stored']} rows, {db['distinct']} distinct seqs, {db['min']}..{db['max']}, "
                            f"gap-free: **{fmt(db['gap_free'])}**; stored = sent: {fmt(r['stored_matches_sent'])}",
                        ]
        elif kind == "stage":
            for t, r in targets.items():
                out.append(
                    _table(
                        [
                            "target",
                            "listeners",
                            "requested",
                            "workers",
                            "client processes",
                            "failed",
                            "not tried",
                            "retried",
                            "connect s",
                            "handshakes/s",
                            "server CPU s (connect)",
                            "client CPU s (connect)",
                            "baseline RSS MB",
                            "RSS MB",
                            "KB per socket",
                            "client RSS MB",
                            "lost",
                        ],
                        [
                            [
                                LABELS.get(t, t),
                                r["listeners"],
                                r["requested"],
                                r["workers"],
                                r["client_processes"],
                                r["connect_failed"],
                                r["not_tried"],
                                r["connect_retries"],
                                r["connect_seconds"],
                                r["handshakes_per_s"],
                                r["connect_server_cpu_s"],
                                r["connect_client_cpu_s"],
                                r["baseline_rss_mb"],
                                r["serving_rss_mb"],
                                r["kb_per_socket"],
                                r.get("client_rss_mb"),
                                r["lost"],
                            ]
                        ],
                    )
                )
                out += [
                    "",
                    f"Source addresses: {', '.join(r['sources'])}. Each post, from the conductor's send to each "
                    "listener's receipt (max = the last listener):",
                    "",
                    _table(
                        ["post", "listeners reached", "p50 ms", "p90 ms", "p99 ms", "max ms"],
                        [
                            [p["post"], p["listeners_reached"], p["p50"], p["p90"], p["p99"], p["max"]]
                            for p in r["per_post_ms"]
                        ],
                    ),
                    "",
                    f"Server CPU while posting: {fmt(r['post_server_cpu_s'])} s "
                    f"({fmt(r['deliveries_per_cpu_s'])} deliveries per CPU-s).",
                ]
                if r.get("connect_failures"):
                    out.append(f"\nHandshake failures by reason: {r['connect_failures']}")
        elif kind == "scaling":
            for series, title in (("by_size", "One room, growing"), ("by_rooms", "Rooms, multiplying")):
                cells = []
                for t, r in targets.items():
                    for pt in r[series]:
                        cells.append([*_step_cells(t, pt)[:1], pt["rooms"], pt["members"], *_step_cells(t, pt)[1:]])
                out += [f"{title}:", "", _table(["target", "rooms", "members", *STEP_HEADER[1:]], cells), ""]
            out.append("![scaling](scaling.png)")
        elif kind == "idle":
            cells = []
            for t, r in targets.items():
                for lv in r["levels"]:
                    cells.append(
                        [
                            LABELS.get(t, t),
                            lv["sockets"],
                            lv["connect_failed"],
                            lv.get("not_tried", 0),
                            lv.get("connect_retries"),
                            lv["handshakes_per_s"],
                            lv["handshakes_per_cpu_s"],
                            lv["baseline_rss_mb"],
                            lv["serving_rss_mb"],
                            lv["rss_mb_per_1000"],
                            lv["kb_per_socket"],
                        ]
                    )
            out.append(
                _table(
                    [
                        "target",
                        "sockets",
                        "failed",
                        "not tried",
                        "retried",
                        "handshakes/s",
                        "handshakes/CPU-s",
                        "baseline RSS MB",
                        "RSS MB",
                        "MB per 1,000",
                        "KB per socket",
                    ],
                    cells,
                )
            )
        out.append("")
        for t, r in targets.items():
            profile = r.get("profile") if isinstance(r, dict) else None
            if profile:
                out += [
                    f"### py-spy profile of the Choir worker ({profile['samples']} samples, `{profile['file']}`)",
                    "",
                    _table(["function (self time)", "%"], profile["self_pct"][:15]),
                    "",
                    _table(["function (inclusive)", "%"], profile["inclusive_pct"][:20]),
                    "",
                ]
    return "\n".join(out) + "\n"


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    colours = COLOURS
    scenarios = results["scenarios"]
    fanouts = [k for k, s in scenarios.items() if s["kind"] == "fanout"]
    panels = len(fanouts) + (1 if "rooms" in scenarios else 0) + (1 if fanouts else 0)
    if not panels:
        return False
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2), squeeze=False)
    axes = list(axes[0])
    if fanouts:
        ax = axes.pop(0)
        for key, style in zip(fanouts, ("-", "--", ":", "-.")):
            for t, r in scenarios[key]["targets"].items():
                xs = [s["offered_deliveries_per_s"] for s in r["steps"]]
                ys = [max(s["latency_ms"]["p99"], 0.1) for s in r["steps"]]
                ax.plot(xs, ys, style, marker="o", color=colours.get(t), label=f"{LABELS.get(t, t)} {key}")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="offered deliveries/s",
            ylabel="p99 latency, ms",
            title="fan-out: p99 by load",
        )
        ax.axhline(100, color="grey", lw=0.8, ls=":")
        ax.legend(fontsize=6)
    load = results["meta"]["reference_load"]
    for key in fanouts:
        ax = axes.pop(0)
        for t, r in scenarios[key]["targets"].items():
            step = _at_load(r["steps"], load) or (r["steps"][-1] if r["steps"] else None)
            if step and step["latency_quantiles_ms"]:
                ax.plot(
                    [max(q, 0.01) for q in step["latency_quantiles_ms"]],
                    range(101),
                    color=colours.get(t),
                    label=f"{LABELS.get(t, t)} ({fmt(step['offered_deliveries_per_s'])}/s)",
                )
        ax.set(xscale="log", xlabel="send-to-receive latency, ms", ylabel="percentile", title=f"{key}: latency CDF")
        ax.legend(fontsize=7)
    if "rooms" in scenarios:
        ax = axes.pop(0)
        for t, r in scenarios["rooms"]["targets"].items():
            if r["latency_quantiles_ms"]:
                ax.plot(
                    [max(q, 0.01) for q in r["latency_quantiles_ms"]],
                    range(101),
                    color=colours.get(t),
                    label=LABELS.get(t, t),
                )
        ax.set(xscale="log", xlabel="send-to-receive latency, ms", ylabel="percentile", title="many rooms: latency CDF")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_scaling(results: dict[str, Any], path: Path) -> bool:
    """Deliveries per server CPU-second and p99 against room size and against the number of rooms."""
    scenario = results["scenarios"].get("scaling")
    if not scenario or not scenario["targets"]:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    load, size = scenario["params"]["load"], scenario["params"]["room_size"]
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 8), squeeze=False)
    panels = (
        ("by_size", "deliveries_per_cpu_s", "members in the one room", "deliveries per server CPU-s", axes[0][0]),
        ("by_size", "p99", "members in the one room", "p99 latency, ms", axes[1][0]),
        ("by_rooms", "deliveries_per_cpu_s", f"rooms of {size}", "deliveries per server CPU-s", axes[0][1]),
        ("by_rooms", "p99", f"rooms of {size}", "p99 latency, ms", axes[1][1]),
    )
    for series, field, xlabel, ylabel, ax in panels:
        for t, r in scenario["targets"].items():
            pts = [p for p in r[series] if p["received"]]
            ys = [p["latency_ms"]["p99"] if field == "p99" else (p[field] or 0) for p in pts]
            ax.plot([p["x"] for p in pts], ys, marker="o", color=COLOURS.get(t), label=LABELS.get(t, t))
        ax.set(xscale="log", yscale="log" if field == "p99" else "linear", xlabel=xlabel, ylabel=ylabel)
        ax.set_title(f"{ylabel} at {load:,} deliveries/s offered", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(results: dict[str, Any], out: Path) -> None:
    """results.json, report.md and latency.png in `out`, copied to bench-output/latest/."""
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "report.md").write_text(markdown(results))
    plot(results, out / "latency.png")
    plot_scaling(results, out / "scaling.png")
    latest = out.parent / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.exists():
        shutil.rmtree(latest)
    shutil.copytree(out, latest)


def console(results: dict[str, Any]) -> str:
    lines = ["", "Choir against the references and peers (ratio = Choir / other)"]
    for row in results["summary"]:
        v, r = row["values"], row["ratios"]
        refs = "  ".join(f"{ref} {fmt(v.get(ref))} (x{fmt(r.get(ref))})" for ref in REFERENCES if ref in v)
        lines.append(f"  {row['scenario']:<12} {row['metric']:<52} Choir {fmt(v.get('choir')):>8}  {refs}")
    return "\n".join(lines)
