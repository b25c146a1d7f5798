#!/usr/bin/env bash
# Set up and serve the demo on a fresh machine: venv, dependencies (FFmpeg included),
# migrations, demo data (two clips, traces, identities, a user and an API key), server.
#   scripts/demo.sh            # serves on http://127.0.0.1:8000/
#   PORT=9000 scripts/demo.sh
source "$(dirname "$0")/_bootstrap.sh" requirements.txt
python manage.py migrate --noinput
python manage.py collectstatic --noinput >/dev/null
python manage.py demo
echo "==> serving on http://127.0.0.1:${PORT:-8000}/  (Ctrl-C to stop)"
exec python manage.py runserver "${HOST:-127.0.0.1}:${PORT:-8000}"
