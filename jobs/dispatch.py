"""Which code runs each kind of job, and how a task reaches the queue.

The one place the rest of ``jobs`` goes through to start work, so the modules form a tree:
services (submit, claim, reap) and runners (the work) send tasks through here, and the tasks
find their runner here; nothing imports ``jobs.tasks`` but Celery.

Tasks are sent by name (``send_task``), runners are named by dotted path and imported when a
job runs: this module imports neither, which is what keeps the graph free of cycles.

Adding a kind of job is one line in :data:`RUNNERS`: ``"reembed": "jobs.runners.run_reembed"``
— a function that takes the claimed :class:`~jobs.models.Job` and returns its result summary
(a dict). The kind's name is what ``services.submit`` takes; no migration is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string

logger = logging.getLogger("jobs")

#: kind → dotted path of its runner (jobs/runners.py says what a runner is).
RUNNERS: dict[str, str] = {
    "register_file": "jobs.runners.run_register",
    "detect_faces": "jobs.runners.run_detect",
    "prewarm": "jobs.runners.run_prewarm",
    "cluster": "jobs.runners.run_cluster",
    "reembed": "jobs.runners.run_reembed",
    "detect_shots": "jobs.runners.run_detect_shots",
}

KINDS: list[str] = list(RUNNERS)


def runner_for(kind: str) -> Callable[[Any], Any]:
    """The function that does the work of a job of ``kind``."""
    return import_string(RUNNERS[kind])


def send(task: str, *args: Any) -> bool:
    """Put ``jobs.tasks.<task>(*args)`` on the queue; False (logged) when the broker cannot take it now.

    A broker that is down is not fatal: the job stays as it is and the reaper sends it again.
    """
    from momentry.celery import app

    try:
        app.send_task(f"jobs.tasks.{task}", args=[str(a) if not isinstance(a, int) else a for a in args],
                      retry=False)
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; the caller's job stays as it is
        logger.warning("could not queue %s%r now (%s); the reaper will send it again", task, args, exc)
        return False
    return True


#: A key the reaper keeps in a Redis broker: when it is missing, Redis lost its data (restarted
#: without persistence, flushed, failed over to an empty replica) and every queued message with it.
BROKER_MARKER = "momentry:jobs:broker-marker"


def broker_was_emptied() -> bool:
    """True once after the broker lost its messages (and on the first check ever); Redis brokers only.

    The marker survives whatever the messages survive (a Redis with persistence keeps both), so a
    missing marker means exactly "the queued messages are gone": their jobs must be sent again now,
    not after ``MOMENTRY_JOB_REQUEUE_SECONDS``. Other brokers answer False (the requeue period applies).
    """
    from django.conf import settings

    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return False
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        with client:
            return bool(client.set(BROKER_MARKER, "1", nx=True))
    except redis.RedisError as exc:
        logger.warning("could not check the broker for lost messages: %s", exc)
        return False
