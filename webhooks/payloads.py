"""The ``data`` of each event, built from the same JSON the REST API shows (so clients parse one shape)."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("momentry.webhooks")


def job(job: Any) -> dict[str, Any]:
    """``job.succeeded`` / ``job.failed`` / ``job.cancelled``: ``{"job": <GET /api/v1/jobs/{id}'s job>}``.

    Never raises (it runs inside the job's end): on an unexpected error the job's id and state go out.
    """
    try:
        from jobs.views import serialize_job  # (jobs.views imports jobs.services, which calls this)

        return {"job": serialize_job(job)}
    except Exception:  # noqa: BLE001 - a notification must not break the job's end
        logger.exception("job %s: webhook payload reduced to its id and state", getattr(job, "pk", None))
        return {"job": {"id": getattr(getattr(job, "pk", None), "hex", None), "state": getattr(job, "state", None)}}


def _person(identity: Any) -> dict[str, Any]:
    return {"identity_uuid": identity.identity_uuid, "name": identity.name}


def merge(survivor: Any, merged: list[Any], traces_moved: int, user: Any = None) -> dict[str, Any]:
    """``identity.merged``: who survived, who was merged into them, how many traces moved, by whom."""
    return {
        "survivor": _person(survivor),
        "merged": [_person(identity) for identity in merged],
        "traces_moved": traces_moved,
        "by": getattr(user, "username", None) or None,
    }
