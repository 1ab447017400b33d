"""Fan-out: each process joins a room's channel-layer group once and writes to its sockets itself.

- `hub`: the process's hub (events in, seats in and out, resync)
- `feed`: one room's seats and seq order, gap filling
- `seat`: a socket's place in a room, owning its cursor and backlog
- `roster`, `batching`: who is online, presence changes announced in batches
- `admission`: connection caps, handshake and per-person token buckets 
- `rooms`: rooms by slug for cookie-less guests' handshakes
- `registry`: one hub per event loop, `current_hub()` / `running_hubs()`, and `take_for_http()` (an HTTP post's token from the same bucket as the person's sockets)
"""

from choir.fanout.feed import Feed
from choir.fanout.hub import Hub
from choir.fanout.registry import current_hub, running_hubs, stop_current_hub, take_for_http
from choir.fanout.seat import Seat, Socket

__all__ = ["Feed", "Hub", "Seat", "Socket", "current_hub", "running_hubs", "stop_current_hub", "take_for_http"]
