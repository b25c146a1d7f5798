"""The Celery app:  celery -A momentry worker  /  celery -A momentry beat.

The broker is ``MOMENTRY_BROKER_URL`` (production: Redis, e.g. ``redis://127.0.0.1:6379/1``).
Without it, kombu's filesystem transport under ``MOMENTRY_DATA_DIR/broker`` carries the
messages, so the demo needs nothing but Python — the same tasks and code path as production,
a real queue and a real worker process, no eager shortcut.

Tasks are acknowledged late and rejected when their worker process dies, so another worker
runs them again; every task is idempotent and checks its :class:`jobs.models.Job` first. Celery
keeps no results: the Job row is the record. See jobs/tasks.py and docs/deploy.md.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")

app = Celery("momentry")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
