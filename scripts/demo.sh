#!/usr/bin/env bash
# Set up and serve the demo on a fresh machine: venv, dependencies (FFmpeg included),
# migrations, demo data (two clips, traces, identities, a user and an API key), server.
#   scripts/demo.sh            # serves on http://127.0.0.1:8000/
#   PORT=9000 scripts/demo.sh
source "$(dirname "$0")/_bootstrap.sh" requirements.txt
host="${HOST:-127.0.0.1}"
port="${PORT:-8000}"
# The address printed in the examples: a wildcard bind is reached locally on 127.0.0.1.
case "$host" in 0.0.0.0|::|"[::]") url_host=127.0.0.1 ;; *:*) url_host="[${host#[}"; url_host="${url_host%]}]" ;; *) url_host="$host" ;; esac
base_url="http://$url_host:$port"
python manage.py migrate --noinput
python manage.py collectstatic --noinput >/dev/null
python manage.py demo --host "$base_url"
echo "==> serving on $base_url/  (Ctrl-C to stop)"
exec python manage.py runserver "$host:$port"
