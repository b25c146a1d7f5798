#!/usr/bin/env bash
# Set up and serve the demo on a fresh machine: venv, dependencies (FFmpeg included),
# migrations, demo data (two clips, traces, identities, a user and an API key), a job worker
# (Celery on the embedded filesystem broker: nothing else to install) and the server.
#   scripts/demo.sh            # serves on http://127.0.0.1:8000/
#   PORT=9000 scripts/demo.sh
source "$(dirname "$0")/_bootstrap.sh" requirements.txt
host="${HOST:-127.0.0.1}"
port="${PORT:-8000}"
# The address printed in the examples: a wildcard bind is reached locally on 127.0.0.1.
case "$host" in 0.0.0.0|::|"[::]") url_host=127.0.0.1 ;; *:*) url_host="[${host#[}"; url_host="${url_host%]}]" ;; *) url_host="$host" ;; esac
base_url="http://$url_host:$port"
# Files the API may register (POST /api/v1/files): the demo clips.
export MOMENTRY_MEDIA_ROOTS="${MOMENTRY_MEDIA_ROOTS:-$ROOT/demo/media}"
python manage.py migrate --noinput
python manage.py collectstatic --noinput >/dev/null
python manage.py demo --host "$base_url"
echo "==> starting a job worker (celery -A momentry worker -B), log in ${MOMENTRY_DATA_DIR:-var}/worker.log"
mkdir -p "${MOMENTRY_DATA_DIR:-var}"
setsid python -m celery -A momentry worker -B --concurrency 1 --loglevel INFO \
  >"${MOMENTRY_DATA_DIR:-var}/worker.log" 2>&1 &
worker=$!
# TERM to the worker's main process only (it stops its pool itself; signalling the whole group can
# deadlock billiard's pool), then whatever is left of the group after 20 s.
stop_worker() {
  kill -TERM "$worker" 2>/dev/null || return 0
  for _ in $(seq 20); do kill -0 "$worker" 2>/dev/null || break; sleep 1; done
  kill -KILL -- "-$worker" 2>/dev/null
  wait "$worker" 2>/dev/null
}
trap stop_worker EXIT
echo "==> serving on $base_url/  (Ctrl-C to stop)"
python manage.py runserver "$host:$port"
