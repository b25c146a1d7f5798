"""Bulk prewarm of representative faces and trace thumbnails (``manage.py prewarm_thumbnails``).

The work is planned in the main process from the database: every trace whose stored face is
stale (or all with ``force``) needs a face, every trace whose face is current but whose
thumbnail is not in the cache needs only the thumbnail; the rest is skipped, which makes a
re-run resume where an interrupted one stopped. Traces are batched per file in start-frame
order, so one batch decodes each GOP it needs once (:func:`representative.warm`).

Batches run in worker processes that touch no database: the main process queries each
batch's candidates, a worker decodes and scores and writes the thumbnails (atomically),
and the main process stores the choices. Workers ignore Ctrl-C; the main process then stops
handing out batches, lets the running ones finish and stores their results, so an
interruption loses no finished work and leaves no half-written file.
"""

from __future__ import annotations

import math
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context

from django.db.models import QuerySet

from media_api.ffmpeg.images import Box
from media_api.ffmpeg.process import media_job_slot
from media_api.models import MediaFile, Trace
from media_api.services import representative
from media_api.services.representative import Face, WarmUnit
from momentry.errors import ApiError
from momentry.processes import die_with_parent

#: Traces per batch (a batch holds one thumbnail per trace in memory while it decodes).
DEFAULT_BATCH = 256
#: A prewarm worker waits this long for a media job slot (web requests share the pool).
SLOT_WAIT_SECONDS = 3600.0


@dataclass
class Batch:
    """Traces of one file to warm together; ``versions`` are their detections_version at planning."""

    file: MediaFile
    needs_face: list[int] = field(default_factory=list)
    needs_thumbnail: dict[int, Face] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)
    trace_ids: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.needs_face) + len(self.needs_thumbnail)


@dataclass
class Summary:
    done: int = 0
    skipped: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    failed_examples: dict[str, list[str]] = field(default_factory=dict)
    interrupted: bool = False

    def fail(self, reason: str, file_uuid: str, trace_ids: Iterable[int]) -> None:
        ids = list(trace_ids)
        self.failed[reason] += len(ids)
        examples = self.failed_examples.setdefault(reason, [])
        examples.extend(f"{file_uuid}/{t}" for t in ids[: max(0, 5 - len(examples))])


def _stored_face(row: dict) -> Face:
    box = Box(row["rep_x"], row["rep_y"], row["rep_width"], row["rep_height"])
    return Face(row["rep_frame_number"], box, row["rep_confidence"])


def plan(files: QuerySet[MediaFile], *, force: bool, batch_size: int, workers: int,
         summary: Summary) -> Iterator[Batch]:
    """Batches of work, file by file; skipped traces are counted in ``summary`` as they are met."""
    fields = ["pk", "trace_id", "face_count", "detections_version", "rep_version", "rep_frame_number",
              "rep_x", "rep_y", "rep_width", "rep_height", "rep_confidence"]
    for media_file in files.order_by("pk"):
        traces = Trace.objects.filter(file=media_file).order_by("start_frame", "trace_id").values(*fields)
        count = traces.count()
        size = max(1, min(batch_size, math.ceil(count / max(1, workers))))
        batch = Batch(media_file)
        for row in traces.iterator(chunk_size=2000):
            if not row["face_count"]:
                summary.skipped["no detections"] += 1
                continue
            current = row["rep_version"] is not None and row["rep_version"] == row["detections_version"]
            if current and not force:
                face = _stored_face(row)
                if representative.thumbnail_key(media_file.file_uuid, face).path.exists():
                    summary.skipped["already done"] += 1
                    continue
                batch.needs_thumbnail[row["pk"]] = face
            else:
                batch.needs_face.append(row["pk"])
            batch.versions[row["pk"]] = row["detections_version"]
            batch.trace_ids[row["pk"]] = row["trace_id"]
            if len(batch) >= size:
                yield batch
                batch = Batch(media_file)
        if len(batch):
            yield batch


def to_unit(batch: Batch) -> WarmUnit:
    """The media work of a batch, with its candidates from one SQL query."""
    return WarmUnit.for_file(batch.file, candidates=representative.candidates_for(batch.needs_face),
                             rerender=dict(batch.needs_thumbnail))


def run_unit(unit: WarmUnit) -> list[representative.Choice]:
    """Worker entry point: no database, one media job slot for the whole batch.

    A file that cannot be decoded raises :class:`FrameReadError`, whose message becomes the
    batch's failure reason in the summary.
    """
    with media_job_slot(SLOT_WAIT_SECONDS):
        return representative.warm(unit)


def record(batch: Batch, choices: list[representative.Choice], summary: Summary) -> None:
    """Store the chosen faces (unless the detections changed meanwhile) and count outcomes."""
    uuid = batch.file.file_uuid
    chosen = set()
    for choice in choices:
        chosen.add(choice.trace_pk)
        if choice.representative is None:
            summary.fail(choice.reason, uuid, [batch.trace_ids[choice.trace_pk]])
        elif representative.save(choice.trace_pk, batch.versions[choice.trace_pk], choice.representative):
            summary.done += 1
        else:
            summary.skipped["detections changed meanwhile"] += 1
    missing = [pk for pk in batch.needs_face if pk not in chosen]
    if missing:  # traces whose detections were deleted after planning
        summary.fail(representative.NO_USABLE_FACE, uuid, [batch.trace_ids[pk] for pk in missing])
    summary.done += len(batch.needs_thumbnail)


def _init_worker(parent_pid: int) -> None:
    """Workers ignore Ctrl-C (the parent winds down) and die with the parent, even on ``kill -9``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)


def prewarm(batches: list[Batch], summary: Summary, *, workers: int = 1,
            on_progress: Callable[[int], object] = lambda n: None) -> Summary:
    """Run planned ``batches`` (see :func:`plan`) in ``workers`` processes; returns the summary, also on Ctrl-C."""

    def finish(batch: Batch, outcome: Callable[[], list[representative.Choice]]) -> None:
        try:
            record(batch, outcome(), summary)
        except Exception as exc:  # noqa: BLE001 - a failed batch is reported, the others go on
            reason = str(exc) if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"
            summary.fail(reason, batch.file.file_uuid, batch.trace_ids.values())
        on_progress(len(batch))

    if workers <= 1:
        try:
            for batch in batches:
                unit = to_unit(batch)
                finish(batch, lambda unit=unit: run_unit(unit))
        except KeyboardInterrupt:
            summary.interrupted = True
        return summary

    running: dict[Future, Batch] = {}
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"), initializer=_init_worker,
                               initargs=(os.getpid(),))
    try:
        try:
            for batch in batches:
                while len(running) >= workers * 2:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        finish(running.pop(future), future.result)
                running[pool.submit(run_unit, to_unit(batch))] = batch
            for future in list(running):
                finish(running.pop(future), future.result)
        except KeyboardInterrupt:
            summary.interrupted = True
            for future in running:
                future.cancel()
            for future, batch in running.items():  # let the batches already decoding finish and keep them
                if not future.cancelled():
                    finish(batch, future.result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return summary


__all__ = ["Batch", "DEFAULT_BATCH", "Summary", "plan", "prewarm", "record", "run_unit", "to_unit"]
