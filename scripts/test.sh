#!/usr/bin/env bash
# Runs the suite twice: on the embedded defaults (SQLite + in-memory layer),
# then on PostgreSQL + Redis when they are reachable (required under CI).
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PG_URL=${CHOIR_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS=${CHOIR_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}
strict=${CHOIR_STRICT:-${CI:-}}
mkdir -p test-output

echo "== import contracts (pyproject.toml [tool.importlinter])"
if ! .venv/bin/lint-imports --no-cache; then
  echo "== import contracts broken: FAIL"
  exit 1
fi

echo "== pass 1: SQLite + in-memory channel layer"
env -u DATABASE_URL -u REDIS_URL CHOIR_TEST_PASS=embedded $PY -m pytest "$@"
first=$?

# The socket guarantees once more against real Daphne with the transport
# adapter's fast path off (choir/transport.py): plain ASGI sends only.
echo "== pass 1b: real Daphne with CHOIR_FAST_PATH=0"
env -u DATABASE_URL -u REDIS_URL CHOIR_TEST_PASS=embedded CHOIR_FAST_PATH=0 $PY -m pytest -q -m "e2e and not browser" \
  tests/test_e2e_daphne.py tests/test_hardening_limits.py tests/test_transport.py
[ $? = 0 ] || first=1

have_services=1
$PY scripts/services_up.py "$PG_URL" "$REDIS" || have_services=0
if [ $have_services = 0 ]; then
  if [ -n "$strict" ]; then
    echo "== pass 2: PostgreSQL or Redis unreachable, and CI requires them: FAIL"
    exit 1
  fi
  echo "== pass 2 skipped: PostgreSQL ($PG_URL) or Redis ($REDIS) unreachable"
  exit $first
fi
echo "== pass 2: PostgreSQL + Redis"
DATABASE_URL=$PG_URL REDIS_URL=$REDIS DATABASE_CONN_MAX_AGE=0 CHOIR_REDIS_PREFIX="choirtest$$" CHOIR_TEST_PASS=services \
  $PY -m pytest "$@"
second=$?
[ $first = 0 ] && [ $second = 0 ]
