"""`python -m bench`: Choir against three reference servers, measured alike.

Everything here runs outside the product: the servers it starts are the real
`manage.py serve` (PostgreSQL + Redis) and three references, and its clients
are real WebSocket clients in several processes. docs/benchmark.md explains
the scenarios and how to read the report.
"""
