"""Exit 0 when the PostgreSQL and Redis given on the command line answer."""

import sys

import psycopg
import redis

pg_url, redis_url = sys.argv[1], sys.argv[2]
try:
    psycopg.connect(pg_url.replace("postgres://", "postgresql://", 1), connect_timeout=3).close()
    redis.Redis.from_url(redis_url, socket_timeout=3).ping()
except Exception as exc:
    print(f"services unreachable: {exc}", file=sys.stderr)
    sys.exit(1)
