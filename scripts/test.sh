#!/usr/bin/env bash
# Run the whole test suite: on SQLite always, and on PostgreSQL too when a server answers
# (TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/). Each PostgreSQL run
# uses a fresh database that is dropped afterwards. Extra arguments go to pytest.
#   scripts/test.sh                  # both databases when PostgreSQL is up
#   TEST_DATABASES=sqlite scripts/test.sh -k thumbnail
source "$(dirname "$0")/_bootstrap.sh" requirements-dev.txt

# The admin's end-to-end tests drive Debian's Chromium (a test tool's own browser download
# cannot work offline), and deploy/nginx.conf is tested in a real nginx. Install them when
# missing and we may.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing ${missing[*]} for the browser and proxy tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || echo "warning: could not install ${missing[*]}; those tests will be skipped"
fi

# Redis (TEST_REDIS_URL, default database 11 of 127.0.0.1:6379): the shared-cache tests use it when it answers.
redis_url="${TEST_REDIS_URL:-redis://127.0.0.1:6379/11}"
if python - "$redis_url" <<'PY' 2>/dev/null
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=3).ping()
PY
then export TEST_REDIS_URL="$redis_url"; else unset TEST_REDIS_URL; echo "==> no Redis at $redis_url: Redis tests skipped"; fi

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
