"""Jobs: submit once, run once, survive lost workers and lost messages, cancel cleanly.

The rules every task relies on (tasks in jobs/tasks.py stay thin and call these):

* **One active job per subject.** ``Job.active_key`` ("kind:subject") is unique while a job is
  queued or running and cleared when it ends, so a second submit of the same job on the same
  file returns the first one (no lock, no race: the database's unique index decides).
* **Claiming.** A task first claims its job (:func:`claim`, a row lock): a job that ended, was
  cancelled, or is running with a fresh heartbeat elsewhere is not run again. Messages may be
  delivered twice (late acknowledgement, the reaper's re-sends); a job runs once.
* **Heartbeats.** A running task reports progress at least every few seconds (:class:`Progress`),
  which also checks for a cancel request. The reaper (:func:`reap`, a beat task every 30 s) sends
  a job again when its heartbeat is older than ``MOMENTRY_JOB_STALE_SECONDS`` (its worker was
  killed or lost) and fails it after ``MOMENTRY_JOB_MAX_ATTEMPTS``; it also sends again a job
  that stayed queued for ``MOMENTRY_JOB_REQUEUE_SECONDS`` (its message was lost with a broker
  restart). No job stays ``running`` forever.
* **All or nothing.** Results are written in one transaction at the end of a job (face analysis
  stores its traces at once; a chunked one stitches its chunks first), so a failed or cancelled
  job leaves the data as it was.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from jobs.models import Job
from media_api.models import MediaFile
from momentry.errors import BadRequest

logger = logging.getLogger("jobs")


class JobCancelled(Exception):
    """A cancel request reached the running task: stop without writing anything."""


def active_key(kind: str, file: MediaFile | None, params: dict[str, Any]) -> str:
    if kind == Job.Kind.REGISTER:
        return f"{kind}:{params['path']}"
    if file is not None:
        return f"{kind}:{file.pk}"
    return kind


# --------------------------------------------------------------------------- submitting


def media_path(raw: str) -> Path:
    """The real path of a file to register, which must lie under one of ``MOMENTRY_MEDIA_ROOTS``."""
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw:
        raise BadRequest("path must be a file path.", param="path")
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise BadRequest("path must be absolute.", param="path")
    resolved = path.resolve()
    roots = [Path(r).resolve() for r in settings.MOMENTRY_MEDIA_ROOTS]
    if not any(resolved.is_relative_to(root) for root in roots):
        raise BadRequest("path is not under a media root (MOMENTRY_MEDIA_ROOTS).", param="path",
                         media_roots=[str(r) for r in roots])
    if not resolved.is_file():
        raise BadRequest("path is not a file.", param="path")
    return resolved


def submit(kind: str, *, file: MediaFile | None = None, params: dict[str, Any] | None = None,
           user: Any = None) -> tuple[Job, bool]:
    """(job, created): a new queued job, or the active one already doing the same."""
    params = dict(params or {})
    key = active_key(kind, file, params)
    for _ in range(3):
        try:
            with transaction.atomic():
                job = Job.objects.create(kind=kind, file=file, params=params, active_key=key,
                                         created_by=user if getattr(user, "is_authenticated", False) else None,
                                         enqueued_at=timezone.now())
        except IntegrityError:
            existing = Job.objects.filter(active_key=key).first()
            if existing is not None:
                return existing, False
            continue  # it ended between the insert and the read: try again
        send(job)
        return job, True
    raise RuntimeError("could not submit the job")  # pragma: no cover - three races in a row


def send(job: Job) -> bool:
    """Put the job's task on the queue. A broker that is down is not fatal: the reaper sends it later."""
    from jobs.tasks import run_job

    try:
        run_job.apply_async(args=[str(job.pk)], retry=False)
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; the job stays queued
        logger.warning("could not queue job %s now (%s); the reaper will send it again", job.pk, exc)
        return False
    return True


# --------------------------------------------------------------------------- running


def claim(job_id: str, worker: str) -> Job | None:
    """Mark the job running on ``worker`` and return it, or None when it must not run here."""
    stale = timezone.now() - timedelta(seconds=settings.MOMENTRY_JOB_STALE_SECONDS)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or not job.is_active:
            return None
        if job.cancel_requested:
            _end(job, Job.State.CANCELLED, message="cancelled before it started")
            return None
        if job.state == Job.State.RUNNING and job.heartbeat_at and job.heartbeat_at > stale:
            return None  # running elsewhere
        now = timezone.now()
        job.state, job.worker, job.heartbeat_at = Job.State.RUNNING, worker, now
        job.started_at = job.started_at or now
        job.attempts += 1
        job.save(update_fields=["state", "worker", "heartbeat_at", "started_at", "attempts"])
    return job


class Progress:
    """Reports a running job's progress (at most once a second) and stops it when cancelled."""

    def __init__(self, job: Job, start: float = 0.0, span: float = 1.0) -> None:
        self.job_id, self.start, self.span = job.pk, start, span
        self._last = 0.0

    def __call__(self, done: float, total: float, message: str = "") -> None:
        now = time.monotonic()
        if now - self._last < 1.0 and done < total:
            return
        self._last = now
        fraction = self.start + self.span * (done / total if total else 1.0)
        beat(self.job_id, fraction, message)


def beat(job_id, progress: float | None = None, message: str | None = None) -> None:
    """Heartbeat (and progress) of a running job; raises :class:`JobCancelled` when a cancel was asked."""
    fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if progress is not None:
        fields["progress"] = round(min(1.0, max(0.0, progress)), 4)
    if message is not None:
        fields["message"] = message[:300]
    Job.objects.filter(pk=job_id, state=Job.State.RUNNING).update(**fields)
    if Job.objects.filter(pk=job_id, cancel_requested=True).exists():
        raise JobCancelled()


def _end(job: Job, state: str, *, result: Any = None, error: str = "", message: str | None = None) -> None:
    job.state, job.finished_at, job.active_key = state, timezone.now(), None
    job.result, job.error = result, error[:10000]
    if state == Job.State.SUCCEEDED:
        job.progress = 1.0
    if message is not None:
        job.message = message[:300]
    job.save(update_fields=["state", "finished_at", "active_key", "result", "error", "progress", "message"])


def succeed(job: Job, result: dict[str, Any], message: str = "done") -> None:
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.is_active:
            _end(locked, Job.State.SUCCEEDED, result=result, message=message)


def fail(job: Job, error: str) -> None:
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.is_active:
            _end(locked, Job.State.FAILED, error=error, message="failed")
    logger.error("job %s (%s) failed: %s", job.pk, job.kind, error.splitlines()[0] if error else "")


def mark_cancelled(job: Job) -> None:
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.is_active:
            _end(locked, Job.State.CANCELLED, message="cancelled; nothing was changed")


# --------------------------------------------------------------------------- cancelling


class NotCancellable(Exception):
    """The job has already ended."""


def cancel(job: Job) -> Job:
    """A queued job ends at once (its task will find it cancelled); a running one stops at its next heartbeat."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if not locked.is_active:
            raise NotCancellable(f"the job has already ended ({locked.state})")
        if locked.state == Job.State.QUEUED:
            locked.cancel_requested = True
            locked.save(update_fields=["cancel_requested"])
            _end(locked, Job.State.CANCELLED, message="cancelled before it started")
        else:
            locked.cancel_requested = True
            locked.message = "cancelling…"
            locked.save(update_fields=["cancel_requested", "message"])
    return Job.objects.get(pk=job.pk)


# --------------------------------------------------------------------------- reaping


@dataclass
class Reaped:
    resent: int = 0
    failed: int = 0
    finishing: int = 0


def reap(now=None) -> Reaped:
    """Send again the jobs whose worker vanished or whose message was lost; fail them after too many tries."""
    now = now or timezone.now()
    outcome = Reaped()
    stale = now - timedelta(seconds=settings.MOMENTRY_JOB_STALE_SECONDS)
    lost = now - timedelta(seconds=settings.MOMENTRY_JOB_REQUEUE_SECONDS)
    candidates = Job.objects.filter(
        Q(state=Job.State.RUNNING, heartbeat_at__lt=stale) | Q(state=Job.State.QUEUED, enqueued_at__lt=lost))
    for job in candidates:
        if job.state == Job.State.RUNNING and job.attempts >= settings.MOMENTRY_JOB_MAX_ATTEMPTS:
            fail(job, f"its worker stopped answering {job.attempts} time(s) (last: {job.worker or 'unknown'})")
            outcome.failed += 1
            continue
        if job.kind == Job.Kind.DETECT and job.chunks.exists() and not job.chunks.filter(done=False).exists():
            from jobs.tasks import finish_detection

            finish_detection.apply_async(args=[str(job.pk)], retry=False)
            outcome.finishing += 1
            continue
        Job.objects.filter(pk=job.pk).update(enqueued_at=now)
        if send(job):
            outcome.resent += 1
    return outcome
