"""Prometheus metrics (served at /metrics to allowed callers only).

Counters are bumped once per broadcast or per frame handled, never per
delivery, to keep the fan-out loop cheap.

Under `manage.py serve` several Daphne workers share one port and a scrape
reaches one of them, so each writes its values to PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode) and /metrics adds them all up. The
gauges' multiprocess modes say how: open sockets per live process (a `pid`
label), people online per room summed over live processes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OPEN_SOCKETS = Gauge("choir_open_sockets", "WebSockets open, per server process", multiprocess_mode="liveall")
ONLINE = Gauge("choir_room_online", "Sockets open in a room, over all server processes", ["room"], multiprocess_mode="livesum")
MESSAGES_STORED = Counter("choir_messages_stored_total", "Messages stored")
FRAMES_DELIVERED = Counter("choir_frames_delivered_total", "Frames written to sockets")
WRITES_QUEUED = Counter(
    "choir_socket_writes_queued_total", "Writes the kernel did not take whole (a reader falling behind), queued in the server"
)
SLOW_READERS_CLOSED = Counter(
    "choir_slow_readers_closed_total",
    "Sockets closed with 4408: more than CHOIR_MAX_QUEUED_BYTES was queued in the server for a reader that fell behind",
)
TRANSPORT_FAST_PATH = Gauge(
    "choir_transport_fast_path",
    "1 while a part of the transport adapter is on in every live server process (choir/transport.py), else 0",
    ["part"],
    multiprocess_mode="livemin",
)
TRANSPORT_MISSING = Counter(
    "choir_transport_internals_missing_total",
    "Daphne/Twisted/autobahn internals the transport adapter found missing or changed at start-up, per process",
    ["internal"],
)
REFUSALS = Counter("choir_refusals_total", "Frames or connections refused", ["code"])
REPLAYS = Counter("choir_replays_total", "Resumes served with ?after=")
REPLAYED_MESSAGES = Counter("choir_replayed_messages_total", "Messages sent by replays")
GAP_FILLS = Counter("choir_gap_fills_total", "Message gaps a hub filled from the database")
BROADCASTS = Counter("choir_broadcasts_total", "Events sent to the channel layer", ["type"])
BROADCAST_FAILURES = Counter("choir_broadcast_failures_total", "Channel-layer sends that failed")
BROADCAST_LATENCY = Histogram(
    "choir_broadcast_latency_seconds",
    "From a message being stored to this process writing it to its sockets",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
