#!/usr/bin/env bash
# Run the whole test suite: on SQLite always, and on PostgreSQL too when a server answers
# (TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/). Each PostgreSQL run
# uses a fresh database that is dropped afterwards. Extra arguments go to pytest.
#   scripts/test.sh                  # both databases when PostgreSQL is up
#   TEST_DATABASES=sqlite scripts/test.sh -k thumbnail
source "$(dirname "$0")/_bootstrap.sh" requirements-dev.txt

# The admin's end-to-end tests drive Debian's Chromium (a test tool's own browser download
# cannot work offline). Install it when missing and we may.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing chromium for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; browser tests will be skipped"
fi

pg_url="${TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/}"
pg_url="${pg_url%/}"
databases="${TEST_DATABASES:-}"
if [ -z "$databases" ]; then
  if python - "$pg_url/postgres" <<'PY' 2>/dev/null
import sys, psycopg
psycopg.connect(sys.argv[1], connect_timeout=3).close()
PY
  then databases="postgres sqlite"; else databases="sqlite"; fi
fi

export MOMENTRY_DATA_DIR="$(mktemp -d)"
trap 'rm -rf "$MOMENTRY_DATA_DIR"' EXIT
status=0
for db in $databases; do
  echo "==> pytest on $db"
  if [ "$db" = postgres ]; then
    export DATABASE_URL="$pg_url/momentry_test_$(date +%s)_$$"
    args=(--create-db)
  else
    unset DATABASE_URL
    args=()
  fi
  set +e
  python -m pytest "${args[@]}" "$@"
  rc=$?
  set -e
  if [ "$rc" = 5 ]; then
    echo "error: pytest collected no tests on $db" >&2
    rc=1
  fi
  [ "$rc" = 0 ] || status=$rc
done
exit $status
