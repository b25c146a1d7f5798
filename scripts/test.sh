#!/usr/bin/env bash
# Run the whole test suite: on SQLite always, and on PostgreSQL too when a server answers
# (TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/). Each PostgreSQL run
# uses a fresh database that is dropped afterwards. Extra arguments go to pytest.
#   scripts/test.sh                  # both databases when PostgreSQL is up
#   TEST_DATABASES=sqlite scripts/test.sh -k thumbnail
source "$(dirname "$0")/_bootstrap.sh" requirements-dev.txt

# The admin's end-to-end tests drive Debian's Chromium (a test tool's own browser download
# cannot work offline), deploy/nginx.conf is tested in a real nginx, and the Redis tests run on a
# private redis-server (below). Install them when missing and we may. Redis comes from Debian's
# redis-tools, which holds the server binary without the redis-server package's system service:
# installing it starts no Redis on the machine.
redis_bin="$(command -v redis-server || true)"
[ -n "$redis_bin" ] || [ ! -x /usr/bin/redis-check-rdb ] || redis_bin=/usr/bin/redis-check-rdb
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -n "$redis_bin" ] || [ -n "${TEST_REDIS_URL:-}" ] || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing ${missing[*]} for the browser, proxy and Redis tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || echo "warning: could not install ${missing[*]}; those tests will be skipped"
  [ -n "$redis_bin" ] || [ ! -x /usr/bin/redis-check-rdb ] || redis_bin=/usr/bin/redis-check-rdb
fi

# Everything this run creates lives in one temporary directory, removed on exit.
run_dir="$(mktemp -d)"
redis_pid=
cleanup() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$run_dir"
}
trap cleanup EXIT
export MOMENTRY_DATA_DIR="$run_dir/data"
mkdir -p "$MOMENTRY_DATA_DIR" "$run_dir/redis" "$run_dir/bin"

# Redis: our own redis-server on a free loopback port, no persistence, in run_dir, stopped on exit —
# never the machine's Redis. TEST_REDIS_URL names database 11 of it (tests use databases 11-15 and flush
# them). Set TEST_REDIS_URL yourself to use another Redis instead.
redis_answers() {
  python - "$1" <<'PY' 2>/dev/null
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}
if [ -n "${TEST_REDIS_URL:-}" ]; then
  redis_answers "$TEST_REDIS_URL" || { echo "==> no Redis at $TEST_REDIS_URL: Redis tests skipped"; unset TEST_REDIS_URL; }
elif [ -n "$redis_bin" ]; then
  # The binary answers to its name: redis-check-rdb runs the server when called redis-server.
  ln -s "$redis_bin" "$run_dir/bin/redis-server"
  export PATH="$run_dir/bin:$PATH"   # tests that start and restart their own Redis use it too
  for _attempt in 1 2 3; do
    port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$run_dir/bin/redis-server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$run_dir/redis" --logfile "$run_dir/redis/redis.log" --daemonize no &
    redis_pid=$!
    for _ in $(seq 100); do
      redis_answers "redis://127.0.0.1:$port/11" && break
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.1
    done
    if redis_answers "redis://127.0.0.1:$port/11"; then
      export TEST_REDIS_URL="redis://127.0.0.1:$port/11"
      echo "==> private redis-server on 127.0.0.1:$port (pid $redis_pid)"
      break
    fi
    kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; redis_pid=
  done
  [ -n "${TEST_REDIS_URL:-}" ] || echo "==> could not start redis-server: Redis tests skipped"
else
  echo "==> no redis-server (Debian: apt-get install redis-tools): Redis tests skipped"
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

# tests/test_install.py builds a production venv (about 90 s): once per run, in the first pass.
install_pass="${TEST_INSTALL:-1}"
status=0
for db in $databases; do
  echo "==> pytest on $db"
  export TEST_INSTALL="$install_pass"
  install_pass=0
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
