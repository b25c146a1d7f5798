"""Celery tasks: thin, idempotent, late-acknowledged (settings ``CELERY_TASK_ACKS_LATE``).

Each takes a job id, claims or checks the job (jobs.services), runs the work (jobs.runners)
and records the outcome. Running one twice does no harm: a job ends once.
"""

from __future__ import annotations

import os
import socket
import traceback

from celery import shared_task
from django.conf import settings
from django.db import close_old_connections

from jobs import runners, services
from jobs.models import Job
from media_api.services.image_cache import evict


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exception(exc)[-3:])


@shared_task(name="jobs.tasks.run_job")
def run_job(job_id: str) -> None:
    close_old_connections()
    job = services.claim(job_id, _worker())
    if job is None:
        return
    try:
        result = runners.RUNNERS[job.kind](job)
    except services.JobCancelled:
        services.mark_cancelled(job)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
        services.fail(job, _error(exc))
    else:
        if result is not runners.DEFERRED:
            services.succeed(job, result)


@shared_task(name="jobs.tasks.analyse_chunk")
def analyse_chunk(job_id: str, number: int) -> None:
    close_old_connections()
    job = Job.objects.filter(pk=job_id, state=Job.State.RUNNING).first()
    if job is None:
        return
    try:
        services.beat(job.pk)
        last = runners.run_chunk(job, number)
    except services.JobCancelled:
        services.mark_cancelled(job)
        return
    except Exception as exc:  # noqa: BLE001
        services.fail(job, _error(exc))
        return
    if last:
        finish_detection.apply_async(args=[job_id], retry=False)


@shared_task(name="jobs.tasks.finish_detection")
def finish_detection(job_id: str) -> None:
    close_old_connections()
    job = Job.objects.filter(pk=job_id, state=Job.State.RUNNING).first()
    if job is None or job.chunks.filter(done=False).exists():
        return
    try:
        result = runners.finish_detection(job)
    except services.JobCancelled:
        services.mark_cancelled(job)
    except Exception as exc:  # noqa: BLE001
        services.fail(job, _error(exc))
    else:
        services.succeed(job, result)


@shared_task(name="jobs.tasks.reap_jobs")
def reap_jobs() -> dict:
    close_old_connections()
    return services.reap().__dict__


@shared_task(name="jobs.tasks.evict_image_cache")
def evict_image_cache() -> dict:
    return evict(settings.MOMENTRY_CACHE_MAX_BYTES).__dict__
