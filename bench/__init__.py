"""`python -m bench`: Choir against three reference servers and three peers, measured alike.

Everything here runs outside the product (it is not part of the `choir`
package): the servers it starts are the real `manage.py serve` (PostgreSQL +
Redis), three Python references, and three peers (Node `ws`, Node Socket.IO
and python-socketio, whose Node packages npm installs into the benchmark's
own cache); its clients are real WebSocket clients in several processes.
docs/benchmark.md explains the scenarios and how to read the report.
"""
