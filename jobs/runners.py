"""What each kind of job does, over the services that do the work (the same code the commands run).

A runner gets its claimed :class:`~jobs.models.Job`, reports progress through
:class:`~jobs.services.Progress` and returns the job's result summary — or :data:`DEFERRED`
when the work continues in other tasks (a long file's face analysis in chunks). Which runner
runs which kind is jobs.dispatch.RUNNERS.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs import dispatch
from jobs.models import Job, JobChunk
from jobs.services import Progress, beat, release_claim
from media_api.faces.chunks import ChunkResult, analyse_chunk, plan_chunks, stitch
from media_api.faces.pipeline import analyse_video, default_stride
from media_api.services.faces import FrameCountMismatch, store_analysis
from media_api.services.files import frame_index_for, register_file, register_object

logger = logging.getLogger("jobs")

DEFERRED = object()


def run_register(job: Job) -> dict[str, Any]:
    if "upload" in job.params:  # a tus upload's stored bytes (uploads/services.py: kept only if a video)
        from uploads.services import register_upload

        return register_upload(job)
    if "url" in job.params:  # an object already in a configured bucket (POST /files {"url"})
        registered = register_object(job.params["url"], owned=bool(job.params.get("owned", False)))
    else:
        registered = register_file(job.params["path"], owned=bool(job.params.get("owned", False)))
    Job.objects.filter(pk=job.pk).update(file=registered.file)
    return {"file_uuid": registered.file.file_uuid, "already_exists": registered.already_exists,
            "total_frames": registered.file.total_frames}


def _stride(job: Job) -> int:
    return int(job.params.get("stride") or default_stride(job.file.fps))


def run_detect(job: Job) -> dict[str, Any] | object:
    """One task for a short file; a long one is split into chunks that any worker can take."""
    media_file = job.file
    index = frame_index_for(media_file)
    plan = plan_chunks(index, settings.MOMENTRY_CHUNK_SECONDS)
    if len(plan) == 1:
        analysis = analyse_video(media_file.path, index, media_file.fps, stride=_stride(job),
                                 workers=settings.MOMENTRY_ANALYSIS_HELPERS, on_progress=Progress(job, 0.0, 0.95))
        return {**_store(job, analysis), "detector_processes": analysis.detector_processes}
    for number, (first, last) in enumerate(plan):
        JobChunk.objects.get_or_create(job=job, index=number, defaults={"first_frame": first, "last_frame": last})
    beat(job.pk, 0.0, f"analysing {len(plan)} chunks on the workers")
    release_claim(job)  # from here the chunk tasks keep it alive, and the last one queues the stitching
    pending = list(job.chunks.filter(done=False).values_list("index", flat=True))
    for number in pending:
        dispatch.send("analyse_chunk", job.pk, number)
    if not pending:  # taken up again after every chunk was done: only the stitching is left
        dispatch.send("finish_detection", job.pk)
    return DEFERRED


def run_chunk(job: Job, chunk: JobChunk) -> bool:
    """Analyse one claimed chunk (idempotent); True when it was the last one missing."""
    number = chunk.index
    total = job.chunks.count()
    media_file = job.file
    result = analyse_chunk(media_file.path, frame_index_for(media_file), media_file.fps, chunk.first_frame,
                           chunk.last_frame, _stride(job), workers=settings.MOMENTRY_ANALYSIS_HELPERS,
                           on_progress=Progress(job, 0.95 * number / total, 0.95 / total))
    with transaction.atomic():
        Job.objects.select_for_update().get(pk=job.pk)  # one chunk at a time decides "last one"
        JobChunk.objects.filter(pk=chunk.pk).update(done=True, result=result.to_bytes(), finished_at=timezone.now())
        missing = job.chunks.filter(done=False).count()
    beat(job.pk, 0.95 * (total - missing) / total, f"{total - missing} of {total} chunks analysed")
    return missing == 0


def finish_detection(job: Job) -> dict[str, Any]:
    """Stitch the chunks (a person across a boundary is one trace) and store everything at once."""
    chunks = [ChunkResult.from_bytes(c.result) for c in job.chunks.filter(done=True).order_by("index")]
    beat(job.pk, 0.96, "stitching chunks")
    analysis = stitch(chunks, job.file.fps)
    result = _store(job, analysis)
    JobChunk.objects.filter(job=job).update(result=None)
    return {**result, "chunks": len(chunks)}


def _store(job: Job, analysis) -> dict[str, Any]:
    media_file = job.file
    if analysis.frames_decoded != media_file.total_frames:
        raise FrameCountMismatch(f"decoded {analysis.frames_decoded} frames, the frame index has "
                                 f"{media_file.total_frames}; nothing was written")
    beat(job.pk, 0.97, "storing traces")  # the last chance to cancel: storing is one transaction
    stored = store_analysis(media_file, analysis, replace=True)
    return {"file_uuid": media_file.file_uuid, "traces": stored.traces, "detections": stored.detections,
            "tracked": stored.tracked, "bindings_kept": stored.bindings_kept, "cuts": stored.cuts,
            "frames_sampled": stored.frames_sampled, "seconds": round(analysis.seconds, 2)}


def run_prewarm(job: Job) -> dict[str, Any]:
    from media_api.models import MediaFile
    from media_api.services import prewarm

    summary = prewarm.Summary()
    files = MediaFile.objects.filter(pk=job.file_id)
    batches = list(prewarm.plan(files, force=bool(job.params.get("force")), batch_size=prewarm.DEFAULT_BATCH,
                                workers=1, summary=summary))
    total = sum(len(b) for b in batches) or 1
    progress, done = Progress(job), [0]

    def advanced(count: int) -> None:
        done[0] += count
        progress(done[0], total, f"{done[0]} of {total} traces")

    prewarm.prewarm(batches, summary, workers=1, on_progress=advanced)
    return {"file_uuid": job.file.file_uuid, "done": summary.done, "skipped": dict(summary.skipped),
            "failed": dict(summary.failed)}


def run_cluster(job: Job) -> dict[str, Any]:
    from identities.suggestions import cluster_unbound_traces

    beat(job.pk, 0.1, "clustering unbound traces")
    result = cluster_unbound_traces(user=job.created_by)
    return {"traces_considered": result.traces_considered, "identities_created": result.identities_created,
            "traces_bound": result.traces_bound, "traces_joined_existing": result.traces_joined_existing}



def run_reembed(job: Job) -> dict[str, Any]:
    """New embeddings for the file's traces with the current model; no detection, curation untouched. A reading
    process decodes part of the file, as a job's face analysis forks its helpers (``MOMENTRY_ANALYSIS_HELPERS``:
    off, one process); the result says how many (``reading_processes``)."""
    from media_api.services.reembed import reembed_file

    result = reembed_file(job.file, only_stale=bool(job.params.get("only_stale")),
                          on_progress=Progress(job, 0.0, 0.97), workers=settings.MOMENTRY_ANALYSIS_HELPERS)
    return result.as_dict()


def run_detect_shots(job: Job) -> dict[str, Any]:
    """Shots of a file without face analysis: one decode through the FFmpeg layer, the face pipeline's cut detector."""
    from media_api.services.shots import detect_shots

    return detect_shots(job.file, on_progress=Progress(job, 0.0, 0.97)).as_dict()
