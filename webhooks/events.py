"""The one call the rest of Momentry makes to announce something: :func:`emit`.

``emit("job.succeeded", {...})`` is cheap and never breaks its caller:

- nothing happens until the caller's transaction commits (``transaction.on_commit``); a rolled-back
  change announces nothing;
- then one query finds the active webhooks subscribed to the event; with none, that is all;
- otherwise one ``INSERT`` records a pending first attempt per webhook (the payload is stored there,
  not in the queue message) and one Celery task per delivery is sent by name
  (``webhooks.tasks.deliver``), so this module imports no task code;
- any error (database, broker, a payload that is not JSON) is logged, never raised: a webhook is a
  notification, and the job or merge that caused it has already happened.

A delivery whose message was lost (broker down) stays ``pending`` and is visible in the admin and at
``GET /api/v1/webhooks/{id}/deliveries``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

logger = logging.getLogger("momentry.webhooks")

JOB_SUCCEEDED = "job.succeeded"
JOB_FAILED = "job.failed"
JOB_CANCELLED = "job.cancelled"
UPLOAD_COMPLETED = "upload.completed"
IDENTITY_MERGED = "identity.merged"

#: Every event a webhook can subscribe to (the API refuses others).
EVENTS: tuple[str, ...] = (JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED, UPLOAD_COMPLETED, IDENTITY_MERGED)


def emit(event: str, data: dict[str, Any]) -> None:
    """Announce ``event`` with ``data`` (a JSON-able dict) to every webhook subscribed to it.

    Safe anywhere: inside a transaction it waits for the commit; it never raises.
    """
    try:
        if event not in EVENTS:
            raise ValueError(f"unknown webhook event {event!r}")
        envelope = {"id": f"evt_{uuid.uuid4().hex}", "type": event, "created": int(time.time()), "data": data}
        # Serialised now: the payload is what was true when the event happened, and a value that is
        # not JSON fails here (logged) rather than in a worker.
        body = json.loads(json.dumps(envelope, cls=DjangoJSONEncoder))
    except Exception:  # noqa: BLE001 - never break the caller
        logger.exception("webhook event %s not emitted", event)
        return
    transaction.on_commit(lambda: _enqueue(event, body), robust=True)


def _enqueue(event: str, body: dict[str, Any]) -> None:
    """Record a pending first attempt per subscribed webhook and send each to the workers."""
    try:
        from webhooks.services import enqueue_event

        enqueue_event(event, body)
    except Exception:  # noqa: BLE001 - never break the caller
        logger.exception("webhook event %s (%s) could not be queued", event, body.get("id"))
