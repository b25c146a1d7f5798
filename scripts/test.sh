#!/usr/bin/env bash
# Run the whole test suite: on SQLite always, and on PostgreSQL too when a server answers
# (TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/). Each PostgreSQL run
# uses a fresh database that is dropped afterwards. Extra arguments go to pytest.
#   scripts/test.sh                  # both databases when PostgreSQL is up
#   TEST_DATABASES=sqlite scripts/test.sh -k thumbnail
# The two passes run side by side (TEST_PARALLEL=0: one after the other), each with its own
# data directory and private redis-server.
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
service_pids=()
pass_pids=()
cleanup() {
  for pid in "${pass_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${service_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$run_dir"
}
trap cleanup EXIT
mkdir -p "$run_dir/bin"

free_port() {
  python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
redis_answers() {
  python - "$1" <<'PY' 2>/dev/null
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

# Redis: our own redis-server on a free loopback port, no persistence, in the pass's directory,
# stopped on exit — never the machine's Redis. TEST_REDIS_URL names database 11 of it (tests use
# databases 11-15 and flush them, so each pass has its own server). Set TEST_REDIS_URL yourself to
# use another Redis instead (the passes then run one after the other).
user_redis="${TEST_REDIS_URL:-}"
if [ -n "$user_redis" ]; then
  redis_answers "$user_redis" || { echo "==> no Redis at $user_redis: Redis tests skipped"; user_redis=; }
elif [ -n "$redis_bin" ]; then
  # The binary answers to its name: redis-check-rdb runs the server when called redis-server.
  ln -s "$redis_bin" "$run_dir/bin/redis-server"
  export PATH="$run_dir/bin:$PATH"   # tests that start and restart their own Redis use it too
else
  echo "==> no redis-server (Debian: apt-get install redis-tools): Redis tests skipped"
fi

# start_redis DIR: a private redis-server in DIR; prints its URL (database 11), or nothing.
start_redis() {
  local dir="$1" port pid _attempt
  mkdir -p "$dir"
  for _attempt in 1 2 3; do
    port="$(free_port)"
    "$run_dir/bin/redis-server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$dir" --logfile "$dir/redis.log" --daemonize no >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do
      redis_answers "redis://127.0.0.1:$port/11" && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if redis_answers "redis://127.0.0.1:$port/11"; then
      echo "$pid redis://127.0.0.1:$port/11"
      return
    fi
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
}

# S3: moto's standalone server (moto[server], a test requirement) on a free loopback port, in memory,
# its log in run_dir, stopped on exit; both passes share it (every test makes its own bucket). No
# S3-compatible server is packaged here (MinIO is not); production uses a real store. TEST_S3_ENDPOINT
# names it (set it yourself to use another S3 endpoint); tests/conftest.py's s3_storage uses it.
s3_answers() {
  python - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=1).close()
PY
}
if [ -z "${TEST_S3_ENDPOINT:-}" ] && command -v moto_server >/dev/null; then
  mkdir -p "$run_dir/moto"
  for _attempt in 1 2 3; do
    port="$(free_port)"
    (cd "$run_dir/moto" && exec moto_server -H 127.0.0.1 -p "$port" >"$run_dir/moto/moto.log" 2>&1) &
    moto_pid=$!
    for _ in $(seq 100); do
      s3_answers "http://127.0.0.1:$port" && break
      kill -0 "$moto_pid" 2>/dev/null || break
      sleep 0.1
    done
    if s3_answers "http://127.0.0.1:$port"; then
      service_pids+=("$moto_pid")
      export TEST_S3_ENDPOINT="http://127.0.0.1:$port"
      echo "==> moto S3 server at $TEST_S3_ENDPOINT (pid $moto_pid)"
      break
    fi
    kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true
  done
  [ -n "${TEST_S3_ENDPOINT:-}" ] || echo "==> could not start moto_server: the S3 fixture starts its own"
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

# run_pass DB ARGS...: pytest on one database, with its own data directory and services.
run_pass() {
  local db="$1"; shift
  local pass_dir="$run_dir/$db" args=() started
  mkdir -p "$pass_dir/data"
  export MOMENTRY_DATA_DIR="$pass_dir/data"
  if [ -n "$user_redis" ]; then
    export TEST_REDIS_URL="$user_redis"
  elif [ -n "$redis_bin" ]; then
    started="$(start_redis "$pass_dir/redis")"
    if [ -n "$started" ]; then
      pass_redis_pid="${started%% *}"
      service_pids+=("$pass_redis_pid")
      export TEST_REDIS_URL="${started#* }"
      echo "==> $db: private redis-server at ${TEST_REDIS_URL%/11} (pid ${started%% *})"
    else
      unset TEST_REDIS_URL
      echo "==> $db: could not start redis-server: Redis tests skipped"
    fi
  fi
  if [ "$db" = postgres ]; then
    export DATABASE_URL="$pg_url/momentry_test_$(date +%s)_$$"
    args=(--create-db)
  else
    unset DATABASE_URL
  fi
  echo "==> pytest on $db"
  set +e
  python -m pytest "${args[@]}" "$@"
  local rc=$?
  set -e
  if [ "$rc" = 5 ]; then
    echo "error: pytest collected no tests on $db" >&2
    rc=1
  fi
  stop_pass_services
  return "$rc"
}
pass_redis_pid=
stop_pass_services() {
  if [ -n "$pass_redis_pid" ]; then kill "$pass_redis_pid" 2>/dev/null || true; pass_redis_pid=; fi
}

# tests/test_install.py builds a production venv (about 90 s): once per run, in the first pass.
install_pass="${TEST_INSTALL:-1}"
status=0
read -r -a db_list <<<"$databases"
if [ ${#db_list[@]} -gt 1 ] && [ "${TEST_PARALLEL:-1}" = 1 ] && [ -z "$user_redis" ]; then
  # The passes share nothing (database, data directory, Redis are each their own), so they run
  # side by side: each on its own core most of the time, which keeps CI well under its budget.
  # Each pass's output goes to a log that is printed whole when the pass ends.
  for db in "${db_list[@]}"; do
    (trap stop_pass_services EXIT; trap 'exit 143' TERM INT
     TEST_INSTALL="$install_pass" run_pass "$db" "$@" >"$run_dir/$db.log" 2>&1) &
    pass_pids+=("$!")
    install_pass=0
  done
  for i in "${!db_list[@]}"; do
    set +e
    wait "${pass_pids[$i]}"
    rc=$?
    set -e
    echo "==================== ${db_list[$i]} (exit $rc) ===================="
    cat "$run_dir/${db_list[$i]}.log"
    [ "$rc" = 0 ] || status=$rc
  done
  pass_pids=()
else
  for db in "${db_list[@]}"; do
    set +e
    TEST_INSTALL="$install_pass" run_pass "$db" "$@"
    rc=$?
    set -e
    install_pass=0
    [ "$rc" = 0 ] || status=$rc
  done
fi
exit $status
