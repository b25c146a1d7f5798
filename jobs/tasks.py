"""Celery tasks: thin, idempotent, late-acknowledged (settings ``CELERY_TASK_ACKS_LATE``).

Each takes a job id, claims or checks the job (jobs.services), runs the work (the kind's runner,
found through jobs.dispatch) with a heartbeat thread beside it, and records the outcome. Running
one twice does no harm: a job runs in one process at a time and ends once.
"""

from __future__ import annotations

import traceback

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections

from jobs import dispatch, runners, services
from jobs.models import Job
from media_api.services.image_cache import evict


def _reason(exc: BaseException) -> tuple[str, str]:
    """(one line for API clients, the traceback for logs and the admin)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:300].rstrip(": "), "".join(traceback.format_exception(exc))


@shared_task(name="jobs.tasks.run_job")
def run_job(job_id: str) -> None:
    close_old_connections()
    job = services.claim(job_id)
    if job is None:
        return
    try:
        with services.KeepAlive(job):
            try:
                result = dispatch.runner_for(job.kind)(job)
            except services.JobCancelled:
                services.mark_cancelled(job)
                return
            except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
                services.fail(job, *_reason(exc))
                return
        if result is not runners.DEFERRED:  # (a deferred job was released to its chunks)
            services.succeed(job, result)
    finally:
        services.let_go(job)


@shared_task(name="jobs.tasks.analyse_chunk")
def analyse_chunk(job_id: str, number: int) -> None:
    close_old_connections()
    job = Job.objects.filter(pk=job_id, state=Job.State.RUNNING).first()
    chunk = services.claim_chunk(job, number) if job is not None else None
    if chunk is None:
        return  # done, or analysed by a live process
    try:
        with services.KeepAlive(job, chunk):
            try:
                services.beat(job.pk)
                last = runners.run_chunk(job, chunk)
            except services.JobCancelled:
                services.mark_cancelled(job)
                return
            except Exception as exc:  # noqa: BLE001
                services.fail(job, *_reason(exc))
                return
    finally:
        services.let_go(job, chunk)
    if last:
        dispatch.send("finish_detection", job_id)


@shared_task(name="jobs.tasks.finish_detection")
def finish_detection(job_id: str) -> None:
    close_old_connections()
    job = services.claim_finish(job_id)
    if job is None:
        return
    try:
        with services.KeepAlive(job):
            try:
                result = runners.finish_detection(job)
            except services.JobCancelled:
                services.mark_cancelled(job)
                return
            except Exception as exc:  # noqa: BLE001
                services.fail(job, *_reason(exc))
                return
        services.succeed(job, result)
    finally:
        services.let_go(job)


_reaper: services.ReaperThread | None = None


@worker_ready.connect
def start_reaper(**_: object) -> None:
    """Each worker's main process reaps (jobs.services.ReaperThread); beat's reap_jobs is a spare."""
    global _reaper
    _reaper = services.ReaperThread()
    _reaper.start()


@worker_shutdown.connect
def stop_reaper(**_: object) -> None:
    if _reaper is not None:
        _reaper.stopping.set()


@shared_task(name="jobs.tasks.reap_jobs")
def reap_jobs() -> dict:
    close_old_connections()
    return services.reap().__dict__


@shared_task(name="jobs.tasks.evict_image_cache")
def evict_image_cache() -> dict:
    return evict(settings.MOMENTRY_CACHE_MAX_BYTES).__dict__
