"""Jobs: submit once, run once, survive lost workers and lost messages, cancel cleanly.

The rules every task relies on (tasks in jobs/tasks.py stay thin and call these):

* **One active job per subject.** ``Job.active_key`` ("kind:subject") is unique while a job is
  queued or running and cleared when it ends, so a second submit of the same job on the same
  file returns the first one (no lock, no race: the database's unique index decides). Its
  parameters are stored filled in with their defaults, so "the same job" means the same work; the
  API refuses (409) a submit whose parameters differ from the active job's.
* **Claiming.** A task first claims its job (:func:`claim`, a row lock) and records the claiming
  process (host, pid, start time). A job that ended or was cancelled is not run again, nor one
  running in a process that still lives: on the same host ``/proc`` answers at once (a claimer
  that died frees the job immediately — this is what makes Celery's redelivery of a task whose
  pool process was killed run at once), elsewhere a heartbeat fresher than
  ``MOMENTRY_JOB_STALE_SECONDS`` counts as alive. Messages may be delivered twice (late
  acknowledgement, the reaper's re-sends); a job runs once at a time, and only the latest claim
  may record its outcome.
* **Heartbeats.** While a task runs, a thread beats the job's heartbeat every
  ``MOMENTRY_JOB_HEARTBEAT_SECONDS`` (:class:`KeepAlive`), whatever the work is doing; progress
  reports (:class:`Progress`) also check for a cancel request. The reaper (:func:`reap`, a beat
  task every ``MOMENTRY_REAP_SECONDS``) sends a job again when its claimer is dead or its
  heartbeat is stale, and fails it after ``MOMENTRY_JOB_MAX_ATTEMPTS``. It sends again a queued job
  at once when the broker lost its messages (a Redis restarted without persistence, see
  :func:`jobs.dispatch.broker_was_emptied`), and any job still queued after
  ``MOMENTRY_JOB_REQUEUE_SECONDS``. No job stays ``running`` forever.
* **All or nothing.** Results are written in one transaction at the end of a job (face analysis
  stores its traces at once; a chunked one stitches its chunks first), so a failed or cancelled
  job leaves the data as it was.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import Q
from django.utils import timezone

from jobs import dispatch, liveness
from jobs.models import Job, JobChunk
from media_api.models import MediaFile
from momentry.errors import BadRequest, Conflict
from webhooks import events as webhook_events
from webhooks import payloads as webhook_payloads

logger = logging.getLogger("jobs")


class JobCancelled(Exception):
    """A cancel request reached the running task: stop without writing anything."""


def active_key(kind: str, file: MediaFile | None, params: dict[str, Any]) -> str:
    if kind == Job.Kind.REGISTER:
        return f"{kind}:{params.get('path') or params.get('url')}"
    if file is not None:
        return f"{kind}:{file.pk}"
    return kind


def with_defaults(kind: str, file: MediaFile | None, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the job will use them: ``{}`` and ``{"stride": <the default>}`` are the same job."""
    params = {key: value for key, value in params.items() if value is not None}
    if kind == Job.Kind.DETECT and file is not None:
        from media_api.faces.pipeline import default_stride

        params["stride"] = int(params.get("stride") or default_stride(file.fps))
    elif kind == Job.Kind.PREWARM:
        params["force"] = bool(params.get("force", False))
    return params


# --------------------------------------------------------------------------- submitting


def media_path(raw: str) -> Path:
    """The real path of a file to register, which must lie under one of ``MOMENTRY_MEDIA_ROOTS``.

    Every refusal is a 400 that says nothing about the server's directories (no home directory
    expansion: ``~user`` is a relative path here).
    """
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw:
        raise BadRequest("path must be a file path.", param="path")
    path = Path(raw)
    if not path.is_absolute():
        raise BadRequest("path must be absolute.", param="path")
    try:
        resolved = path.resolve()
        inside = any(resolved.is_relative_to(Path(root).resolve()) for root in settings.MOMENTRY_MEDIA_ROOTS)
        if not inside:
            raise BadRequest("path is not under a media root (MOMENTRY_MEDIA_ROOTS).", param="path")
        if not resolved.is_file():
            raise BadRequest("path is not a file.", param="path")
    except OSError as exc:
        reason = "path or one of its names is too long." if exc.errno == errno.ENAMETOOLONG else \
            "path cannot be read."
        raise BadRequest(reason, param="path") from None
    return resolved


class OtherParamsActive(Conflict):
    """The same kind of job on the same subject is queued or running with other parameters."""


def submit(kind: str, *, file: MediaFile | None = None, params: dict[str, Any] | None = None,
           user: Any = None, same_params: bool = False) -> tuple[Job, bool]:
    """(job, created): a new queued job, or the active one already doing the same.

    With ``same_params``, an active job whose parameters differ is a :class:`OtherParamsActive`
    (409) instead of being returned as if it were the job asked for.
    """
    if kind not in dispatch.RUNNERS:
        raise ValueError(f"unknown kind of job {kind!r} (jobs.dispatch.RUNNERS)")
    params = with_defaults(kind, file, dict(params or {}))
    key = active_key(kind, file, params)
    for _ in range(3):
        try:
            with transaction.atomic():
                job = Job.objects.create(kind=kind, file=file, params=params, active_key=key,
                                         created_by=user if getattr(user, "is_authenticated", False) else None,
                                         enqueued_at=timezone.now())
        except IntegrityError:
            existing = Job.objects.filter(active_key=key).first()
            if existing is None:
                continue  # it ended between the insert and the read: try again
            if same_params and existing.params != params:
                raise OtherParamsActive(
                    f"A {kind} job with other parameters is already {existing.state} on this subject; "
                    f"wait for it or cancel it first.",
                    {"job_id": existing.pk.hex, "url": f"/api/v1/jobs/{existing.pk.hex}", "state": existing.state,
                     "params": existing.params, "requested_params": params}) from None
            return existing, False
        send(job)
        return job, True
    raise RuntimeError("could not submit the job")  # pragma: no cover - three races in a row


def send(job: Job) -> bool:
    """Put the job's task on the queue. A broker that is down is not fatal: the reaper sends it later.

    A queued job whose message could not be sent is marked so (``enqueued_at`` empty): the next
    reap sends it, without waiting for ``MOMENTRY_JOB_REQUEUE_SECONDS``.
    """
    sent = dispatch.send("run_job", job.pk)
    Job.objects.filter(pk=job.pk, state=Job.State.QUEUED).update(enqueued_at=timezone.now() if sent else None)
    return sent


# --------------------------------------------------------------------------- running


def claimer(row: Job | JobChunk) -> liveness.Process | None:
    if not row.worker_pid:
        return None
    return liveness.Process(row.worker_host, row.worker_pid, row.worker_started or 0)


def claimer_gone(row: Job | JobChunk, now: datetime | None = None) -> bool:
    """Is the process running this job (or chunk) gone? Known at once on its host; elsewhere, from a stale heartbeat.

    A live process on this host keeps its claim even with a stale heartbeat (its heartbeat thread may
    wait on a busy database), up to ``MOMENTRY_JOB_REQUEUE_SECONDS``: a process silent that long hangs.
    """
    now = now or timezone.now()
    process = claimer(row)
    alive = liveness.is_alive(process) if process is not None else None
    if alive is False:
        return True
    limit = settings.MOMENTRY_JOB_REQUEUE_SECONDS if alive else settings.MOMENTRY_JOB_STALE_SECONDS
    return row.heartbeat_at is None or row.heartbeat_at < now - timedelta(seconds=limit)


def _record_claimer(row: Job | JobChunk, process: liveness.Process) -> list[str]:
    row.worker_host, row.worker_pid, row.worker_started = process.host, process.pid, process.started
    row.heartbeat_at = timezone.now()
    return ["worker_host", "worker_pid", "worker_started", "heartbeat_at"]


def claim(job_id: str, process: liveness.Process | None = None) -> Job | None:
    """Mark the job running in ``process`` (this one by default) and return it, or None when it must not run."""
    process = process or liveness.this_process()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or not job.is_active:
            return None
        if job.cancel_requested:
            _end(job, Job.State.CANCELLED, message="cancelled before it started")
            return None
        if job.state == Job.State.RUNNING:
            if not claimer_gone(job):
                return None  # running in a live process: never twice at once
            if job.attempts >= settings.MOMENTRY_JOB_MAX_ATTEMPTS:
                _end(job, Job.State.FAILED, message="failed",
                     error=f"its worker process died {job.attempts} time(s) (last: {job.worker or 'unknown'})")
                logger.error("job %s (%s) failed: its worker died %s time(s)", job.pk, job.kind, job.attempts)
                return None
        job.state, job.started_at = Job.State.RUNNING, job.started_at or timezone.now()
        job.worker = f"{process.host.split('/')[0]}:{process.pid}"
        job.attempts += 1
        job.save(update_fields=["state", "worker", "started_at", "attempts", *_record_claimer(job, process)])
    return job


def claim_finish(job_id: str, process: liveness.Process | None = None) -> Job | None:
    """Claim a chunked job whose chunks are all done, to stitch and store them — once, by one process."""
    process = process or liveness.this_process()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, state=Job.State.RUNNING).first()
        if job is None or job.chunks.filter(done=False).exists():
            return None
        if job.worker_pid is not None and not claimer_gone(job):
            return None  # another process is finishing it
        job.worker = f"{process.host.split('/')[0]}:{process.pid}"
        job.save(update_fields=["worker", *_record_claimer(job, process)])
    return job


def claim_chunk(job: Job, number: int, process: liveness.Process | None = None) -> JobChunk | None:
    """Claim one chunk of a running job, like a job: None when it is done or analysed by a live process."""
    process = process or liveness.this_process()
    with transaction.atomic():
        chunk = JobChunk.objects.select_for_update().filter(job=job, index=number).first()
        if chunk is None or chunk.done or (chunk.worker_pid is not None and not claimer_gone(chunk)):
            return None
        chunk.save(update_fields=_record_claimer(chunk, process))
    return chunk


def release_claim(job: Job) -> None:
    """The job goes on in other tasks (chunks): its liveness is their heartbeat, not this process."""
    Job.objects.filter(pk=job.pk, attempts=job.attempts).update(worker_pid=None)


def let_go(job: Job, chunk: JobChunk | None = None) -> None:
    """At the end of a task: drop this process's claim if it recorded no outcome (an unexpected error).

    The process lives on (serving other tasks), so its claim would otherwise hold the job until
    ``MOMENTRY_JOB_REQUEUE_SECONDS``; without it the stale heartbeat frees the job.
    """
    pid = liveness.this_process().pid
    if chunk is not None:
        JobChunk.objects.filter(pk=chunk.pk, done=False, worker_pid=pid).update(worker_pid=None)
    else:
        Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempts=job.attempts, worker_pid=pid).update(
            worker_pid=None)


class KeepAlive:
    """Beats a job's heartbeat (and its chunk's) every ``MOMENTRY_JOB_HEARTBEAT_SECONDS`` from a thread.

    The heartbeat then says "the process lives", whatever the work is doing (a long frame index,
    one big transaction, a model loading), so the stale limit can be short.
    """

    def __init__(self, job: Job, chunk: JobChunk | None = None) -> None:
        self.job_id, self.attempt, self.chunk_id = job.pk, job.attempts, chunk.pk if chunk else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.pk.hex[:8]}", daemon=True)

    def __enter__(self) -> KeepAlive:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            while not self._stop.wait(settings.MOMENTRY_JOB_HEARTBEAT_SECONDS):
                try:
                    now = timezone.now()
                    Job.objects.filter(pk=self.job_id, state=Job.State.RUNNING, attempts=self.attempt).update(
                        heartbeat_at=now)
                    if self.chunk_id is not None:
                        JobChunk.objects.filter(pk=self.chunk_id).update(heartbeat_at=now)
                except DatabaseError as exc:  # e.g. SQLite busy during a long write: try again next beat
                    logger.warning("heartbeat of job %s not recorded: %s", self.job_id, exc)
        finally:
            connections.close_all()  # this thread's own connections


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


def _end(job: Job, state: str, *, result: Any = None, error: str = "", detail: str = "",
         message: str | None = None) -> None:
    job.state, job.finished_at, job.active_key = state, timezone.now(), None
    job.result, job.error, job.error_detail = result, error[:1000], detail[:20000]
    if state == Job.State.SUCCEEDED:
        job.progress = 1.0
    if message is not None:
        job.message = message[:300]
    job.save(update_fields=["state", "finished_at", "active_key", "result", "error", "error_detail", "progress",
                            "message"])
    webhook_events.emit(f"job.{state}", webhook_payloads.job(job))  # sent once the end is committed


def _locked_if_mine(job: Job) -> Job | None:
    """The job, locked, if it is still active and still the claim ``job`` was given (else a newer claim owns it)."""
    locked = Job.objects.select_for_update().get(pk=job.pk)
    if not locked.is_active or locked.attempts != job.attempts:
        return None
    return locked


def succeed(job: Job, result: dict[str, Any], message: str = "done") -> None:
    with transaction.atomic():
        if (locked := _locked_if_mine(job)) is not None:
            _end(locked, Job.State.SUCCEEDED, result=result, message=message)


def fail(job: Job, error: str, detail: str = "") -> None:
    """End the job as failed: ``error`` is the one line API clients see, ``detail`` (a traceback) stays inside."""
    with transaction.atomic():
        if (locked := _locked_if_mine(job)) is not None:
            _end(locked, Job.State.FAILED, error=error, detail=detail, message="failed")
    logger.error("job %s (%s) failed: %s%s", job.pk, job.kind, error, f"\n{detail}" if detail else "")


def mark_cancelled(job: Job) -> None:
    with transaction.atomic():
        if (locked := _locked_if_mine(job)) is not None:
            _end(locked, Job.State.CANCELLED, message="cancelled; nothing was changed")


# --------------------------------------------------------------------------- cancelling


class NotCancellable(Exception):
    """The job has already ended."""


def may_cancel(user: Any, job: Job) -> bool:
    """Whoever submitted the job, and admins (staff, as in momentry.auth), may cancel it."""
    if getattr(user, "is_staff", False) or getattr(user, "is_superuser", False):
        return True
    return job.created_by_id is not None and job.created_by_id == getattr(user, "pk", None)


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


class ReaperThread(threading.Thread):
    """:func:`reap` every ``MOMENTRY_REAP_SECONDS`` in a worker's main process (started by jobs.tasks).

    Every worker reaps, beside its pool: the round never waits in the queue behind long jobs (a reap
    *task* would, on workers busy with them), and each host checks its own dead claimers. Rounds on
    several workers at once are harmless: sending a running job again is one guarded update.
    """

    def __init__(self) -> None:
        super().__init__(name="momentry-reaper", daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(settings.MOMENTRY_REAP_SECONDS):
            try:
                reap()
            except Exception:  # noqa: BLE001 - the next round tries again
                logger.exception("reaping jobs failed")
            finally:
                connections.close_all()


@dataclass
class Reaped:
    resent: int = 0
    failed: int = 0
    finishing: int = 0
    chunks_resent: int = 0
    broker_emptied: bool = False


def reap(now: datetime | None = None) -> Reaped:
    """Send again the jobs whose worker died or whose message was lost; fail them after too many tries."""
    now = now or timezone.now()
    outcome = Reaped(broker_emptied=dispatch.broker_was_emptied())
    if outcome.broker_emptied:
        logger.warning("the broker lost its messages (restarted without persistence?): sending active jobs again")
    stale = now - timedelta(seconds=settings.MOMENTRY_JOB_STALE_SECONDS)
    lost = now - timedelta(seconds=settings.MOMENTRY_JOB_REQUEUE_SECONDS)
    running = Q(state=Job.State.RUNNING) & (Q(heartbeat_at__lt=stale) | Q(worker_host=liveness.host_id(),
                                                                          worker_pid__isnull=False))
    queued = Q(state=Job.State.QUEUED) if outcome.broker_emptied else \
        Q(state=Job.State.QUEUED) & (Q(enqueued_at__lt=lost) | Q(enqueued_at__isnull=True))
    waiting_on_chunks = Q(state=Job.State.RUNNING, worker_pid__isnull=True)
    for job in Job.objects.filter(running | queued | waiting_on_chunks |
                                  (Q(state=Job.State.RUNNING) if outcome.broker_emptied else Q())):
        if job.state == Job.State.QUEUED:
            if Job.objects.filter(pk=job.pk, state=job.state, enqueued_at=job.enqueued_at).update(enqueued_at=now):
                outcome.resent += send(job)  # (the update: one reaper of several sends it)
        elif job.worker_pid is None and job.chunks.exists():
            _reap_chunked(job, now, outcome)
        elif claimer_gone(job, now):
            _resend_running(job, outcome)
    return outcome


def _resend_running(job: Job, outcome: Reaped) -> None:
    """Queue again a job whose process is gone (or fail it after too many attempts).

    It goes back to ``queued``, which is what it is until a worker claims it, and is not sent again
    at every round while its message waits in the queue.
    """
    if job.attempts >= settings.MOMENTRY_JOB_MAX_ATTEMPTS:
        fail(job, f"its worker stopped answering {job.attempts} time(s) (last: {job.worker or 'unknown'})")
        outcome.failed += 1
    elif Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempts=job.attempts).update(
            state=Job.State.QUEUED, worker_pid=None, message="sent again: its worker stopped"):
        outcome.resent += send(job)


def _reap_chunked(job: Job, now: datetime, outcome: Reaped) -> None:
    """A long file's analysis waiting on its chunks, which may simply be waiting in the queue.

    A chunk whose process died (at once on this host, else after a stale heartbeat) is sent again,
    and so is every chunk waiting for a worker when the broker lost its messages (a chunk being
    analysed keeps its process). Otherwise the job is taken up again only when no chunk has beaten for
    ``MOMENTRY_JOB_REQUEUE_SECONDS``, like a queued job: chunks waiting in a long queue are not sent twice.
    """
    pending = list(job.chunks.filter(done=False))
    stale = job.heartbeat_at is None or job.heartbeat_at < now - timedelta(seconds=settings.MOMENTRY_JOB_STALE_SECONDS)
    if not pending:
        if stale:
            Job.objects.filter(pk=job.pk).update(heartbeat_at=now)  # one finishing message per stale period
            outcome.finishing += dispatch.send("finish_detection", job.pk)
        return
    for chunk in pending:
        if chunk.worker_pid is None:
            lost = outcome.broker_emptied  # waiting in the queue, unless the queue is gone
        else:  # being analysed, unless its process is gone (then one reaper of several sends it)
            lost = claimer_gone(chunk, now) and JobChunk.objects.filter(
                pk=chunk.pk, worker_pid=chunk.worker_pid, heartbeat_at=chunk.heartbeat_at).update(worker_pid=None)
        if lost:
            outcome.chunks_resent += dispatch.send("analyse_chunk", job.pk, chunk.index)
    if job.heartbeat_at is None or job.heartbeat_at < now - timedelta(seconds=settings.MOMENTRY_JOB_REQUEUE_SECONDS):
        _resend_running(job, outcome)
