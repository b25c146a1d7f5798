"""Re-embedding: new face vectors for a file's existing traces, without detecting again.

When the embedding model changes (dlib's ResNet → SFace in Faces v3), every stored vector is of a
model nothing compares any more (``Trace.embedding_model``), so those traces can be neither
suggested nor clustered. Detecting again would fix that but replaces the traces (new ids; names
are carried over, hidden traces and curation history are not). Re-embedding keeps everything and
only rewrites ``Trace.embedding``, ``Trace.exemplars`` and ``Trace.embedding_model``:

1. per trace, a few good faces are chosen from its stored detections (:func:`choose_faces`):
   tall enough and confident enough for the pipeline to embed them (``tracker.MIN_EMBED_HEIGHT``,
   ``MIN_EMBED_SCORE``), ranked by height x confidence, at most one per stretch of the trace so
   they spread over it;
2. the choice is made before anything is decoded (:func:`plan_faces`): faces on frames just after a
   keyframe (:data:`KEYFRAME_REACH`: a picture or two per GOP instead of the whole file), and for a
   trace with no usable face there (shorter than a GOP) one other frame — of its good faces, the one
   nearest after a keyframe; and, as the pipeline embeds a track again 2 s later, a good face 2 s from
   those chosen when the trace has one (up to 3 moments), again the one nearest after a keyframe. The
   file is then read once through the FFmpeg layer's batch reader
   (sorted, grouped by keyframe, each GOP decoded once up to its deepest wanted frame, and of that
   only the reference pictures the wanted ones need). Every chosen face is aligned on YuNet's
   landmarks as in the pipeline (``embeddings.align_face``: unreadable faces — profiles, blur,
   darkness — are skipped);
3. each readable face gets a quality (``exemplars.quality``: size, how frontal, how sharp); the
   best are embedded with the current model by the pipeline's own evidence rule (:func:`best_faces`:
   faces 2 s apart, or the later 1.4x as tall as the earlier, at most 3 — so a re-embedded trace carries the
   evidence a fresh analysis would), the most different of them kept as the trace's exemplars
   (``Trace.exemplars``) and their quality-weighted mean as ``Trace.embedding`` — for the whole file
   in one transaction at the end; a trace whose detections changed meanwhile
   (``detections_version``) or that was deleted is left alone.

Only the few pixels a face needs are converted to RGB (:func:`face_region`), not the whole frame. The file is read
in two lanes, this process and a reading process (``workers.Worker``), each decoding whole batches of GOPs on one
thread and aligning their faces (:func:`read_batch`); this one also embeds each trace once every batch with its
frames is read (SFace, ~9 ms a face), so one job keeps both cores busy (a long film is one job on one queue worker).
The vectors are the same as with one lane, bit for bit.
Cost and what each choice saved: bench/bench_reembed.py, docs/BENCHMARKS.md.

A trace with no readable face keeps what it had (an old model's vector is never compared anyway,
and a current one is not thrown away for an unlucky choice of frames). Nothing else is written:
bindings, hidden traces, curation history, detections and cached faces stay as they are. When vectors
of the current model were replaced, the cast page's kept grouping is dropped (it is regrouped on the
next visit): it carries over traces that gain or lose a vector, but cannot see one replaced in place.
"""

from __future__ import annotations

import os
import resource
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass, field
from functools import partial
from itertools import combinations
from typing import Any, NamedTuple

import cv2
import numpy as np
from django.db import transaction

from media_api.faces import exemplars, tracker
from media_api.faces.embeddings import (
    ALIGN_FACE,
    ALIGN_INPUT,
    MODEL_NAME,
    align_face_scored,
    embed_aligned,
    load_sface,
    to_bytes,
)
from media_api.faces.tracker import EMBED_EVERY_SECONDS, MAX_EMBEDDINGS, MIN_EMBED_HEIGHT, MIN_EMBED_SCORE
from media_api.faces.workers import Worker, run_here
from media_api.ffmpeg.frames import FrameReader
from media_api.models import Detection, MediaFile, Trace
from media_api.services.files import frame_index_for

#: Faces tried per trace (aligned with YuNet, ~2-5 ms each; one per stretch of the trace).
CANDIDATES_PER_TRACE = 8
#: Frames at most this far after a keyframe are chosen first (decoding a frame costs the reference pictures of its
#: GOP before it): a trace longer than a GOP always has some. 1 rather than 3: half the faces to align (YuNet,
#: ~5 ms each at 1080p), the same traces embedded on the demo clips, 8-10 % less CPU (bench/bench_reembed.py).
KEYFRAME_REACH = 1
#: A trace with no usable face that near a keyframe (shorter than a GOP) gets this many faces from elsewhere: a
#: trace shorter than a GOP looks much the same on all its frames (a second one embedded no more traces in
#: bench/bench_reembed.py and cost ~7 % more CPU at 1080p) ...
SECOND_PASS_CANDIDATES = 1
#: ... of its faces at least this tall relative to its tallest, the one fewest frames after a keyframe (decoding
#: stops at the deepest frame wanted in a GOP, so the earliest good face is the cheap one). Taking instead its best
#: face among the frames other traces' needs decode anyway embedded fewer traces (70 of 80 on facenet1080).
SECOND_PASS_QUALITY = 0.8
#: Readable faces embedded per trace (SFace, ~9 ms each), best first by ``exemplars.quality`` (size, pose,
#: sharpness), by the pipeline's own evidence rule (``tracker.wants_embedding``): a track embeds its first
#: readable face, then again only EMBED_EVERY_SECONDS later or once the face has grown EMBED_GROWTH times, at
#: most MAX_EMBEDDINGS. Here each face embedded must be that far in time, or that much bigger than the earlier
#: one (of the two), from every face already taken: a trace shorter than 2 s with a steady size gets its one
#: best face, as a fresh analysis gives it one. It replaces "at most 2 faces from one moment" (two adjacent
#: frames of a short trace, whose SFace vectors are 0.26-0.38 apart, median): bench/bench_reembed.py,
#: docs/BENCHMARKS.md (Re-embedding) for what it saved and what it kept.
FACES_PER_TRACE = MAX_EMBEDDINGS
#: Frames a batch holds at least (:func:`batches`: whole GOPs): small enough that the two lanes finish together,
#: big enough that a call's round trip (~1 ms) is nothing beside decoding a GOP.
BATCH_FRAMES = 8
#: Batches queued for the reading process at most; meanwhile this process reads the next one itself.
QUEUED_BATCHES = 2
#: Planar 4:2:0 formats whose face regions are converted to RGB alone (:func:`face_region`), not the frame.
_I420 = {"yuv420p", "yuvj420p"}

Box = tuple[int, int, int, int]
#: (frame_number, done, total) → None; may raise to stop (a job's cancel request).
OnProgress = Callable[[int, int, str], None]


@dataclass
class ReembedResult:
    """What one file's re-embedding did (what the command prints and a job reports)."""

    file_uuid: str
    traces: int = 0
    embedded: int = 0
    unreadable: int = 0
    changed_meanwhile: int = 0
    faces_tried: int = 0
    faces_embedded: int = 0
    frames_decoded: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    model: str = MODEL_NAME
    #: Processes that decoded and aligned besides this one (0: this one alone). ``cpu_seconds`` counts theirs too.
    reading_processes: int = 0
    #: Batches of GOPs read (:func:`batches`): by this process, by the reading process.
    batches_read: list[int] = field(default_factory=lambda: [0, 0])
    #: CPU seconds (every thread, in whichever process) of decoding, aligning and embedding.
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("decode", "align", "embed"), 0.0))

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["seconds"] = round(self.seconds, 2)
        data["cpu_seconds"] = round(self.cpu_seconds, 2)
        data["timings"] = {key: round(value, 2) for key, value in self.timings.items()}
        return data


def choose_faces(rows: Iterable[tuple[int, int, int, int, int, float]], limit: int = CANDIDATES_PER_TRACE,
                 allowed: Callable[[int], bool] | None = None) -> list[tuple[int, Box]]:
    """The frames (with their boxes) worth embedding in one trace, best first, at most ``limit``.

    ``rows`` are the trace's detections as ``(frame, x, y, width, height, confidence)``. Faces the
    pipeline would not embed (under MIN_EMBED_HEIGHT px or MIN_EMBED_SCORE) are left out, and frames
    ``allowed`` refuses; the trace's span is cut into ``limit`` equal stretches and the best face of
    each (height x confidence) is kept, so the choice covers the trace instead of one close-up moment.
    """
    usable = [r for r in rows if r[4] >= MIN_EMBED_HEIGHT and r[5] >= MIN_EMBED_SCORE
              and (allowed is None or allowed(r[0]))]
    if not usable:
        return []
    first = min(r[0] for r in usable)
    span = max(r[0] for r in usable) - first + 1
    best: dict[int, tuple[float, int, Box]] = {}
    for frame, x, y, w, h, confidence in usable:
        stretch = (frame - first) * limit // span
        score = h * confidence
        if stretch not in best or score > best[stretch][0]:
            best[stretch] = (score, frame, (x, y, w, h))
    ranked = sorted(best.values(), key=lambda item: (-item[0], item[1]))
    return [(frame, box) for _, frame, box in ranked]


def stale_traces() -> Any:
    """Traces without a vector of the current model (another model's, or none at all)."""
    return Trace.objects.exclude(embedding__isnull=False, embedding_model=MODEL_NAME)


def _traces(media_file: MediaFile, only_stale: bool) -> tuple[dict[int, int], dict[int, list]]:
    """({trace pk: detections_version}, {trace pk: its detections}) for the traces to re-embed."""
    traces = stale_traces() if only_stale else Trace.objects.all()
    versions = dict(traces.filter(file=media_file).values_list("pk", "detections_version"))
    rows: dict[int, list] = defaultdict(list)
    detections = (Detection.objects.filter(file=media_file, trace_id__in=list(versions)).order_by()
                  .values_list("trace_id", "frame_number", "x", "y", "width", "height", "confidence")
                  .iterator(chunk_size=10000))
    for trace_pk, *row in detections:
        rows[trace_pk].append(row)
    return versions, rows


def reembed_file(media_file: MediaFile, *, only_stale: bool = False, on_progress: OnProgress | None = None,
                 workers: bool = True) -> ReembedResult:
    """Embed the traces of ``media_file`` again with the current model (all, or ``only_stale``) and store them.

    Decoding is what costs on long footage, so the faces are chosen before anything is decoded
    (:func:`plan_faces`) and the file is read once: each GOP decoded once, only up to the deepest frame
    wanted in it (and of that, only the pictures those frames need: ``FrameReader``).
    ``on_progress(done, total, message)`` is called as frames are read and once before storing; if it
    raises (a cancelled job), nothing has been written. A reading process decodes and aligns part of the
    file meanwhile (``workers=False``: this process alone, as where no process can be started).
    """
    clock, cpu = time.perf_counter(), time.process_time()
    result = ReembedResult(file_uuid=media_file.file_uuid)
    versions, rows = _traces(media_file, only_stale)
    result.traces = len(versions)
    index = frame_index_for(media_file)
    chosen = plan_faces(rows, index)
    if workers:
        # A forked child that inherits OpenCV's thread pool deadlocks on the pool's lock (media_api/faces/pipeline.py).
        # One OpenCV thread per process; the two processes are the lanes.
        cv2.setNumThreads(1)
    load_sface()  # this process embeds
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    faces, calls = _read_faces(media_file, index, chosen, result, on_progress, workers)
    vectors = _collect(faces, calls, result)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)  # the reading process, joined on closing
    child_cpu = ended.ru_utime + ended.ru_stime - children.ru_utime - children.ru_stime
    if on_progress is not None:
        on_progress(1, 1, "storing embeddings")  # the last chance to cancel: storing is one transaction
    had_current = set(Trace.objects.filter(pk__in=list(vectors), embedding__isnull=False, embedding_model=MODEL_NAME)
                      .values_list("pk", flat=True))
    result.embedded, result.changed_meanwhile = store_vectors(media_file, vectors, versions)
    if result.embedded:
        from media_api.services.face_search import embeddings_changed

        embeddings_changed()  # search by photo: every process's copy of the vectors reloads
    if had_current and result.embedded:
        from identities.cast.grouping import regroup

        regroup()  # the cast page's kept grouping notices traces gaining a vector, not one replaced in place
    result.unreadable = result.traces - len(vectors)
    result.seconds, result.cpu_seconds = time.perf_counter() - clock, time.process_time() - cpu + child_cpu
    return result


def plan_faces(rows: dict[int, list], index: Any) -> dict[int, list[tuple[int, Box]]]:
    """{trace pk: the frames (with boxes) to align, best first}, chosen from the stored detections alone.

    A trace with usable faces at most KEYFRAME_REACH frames after a keyframe takes those (a picture or two
    per GOP). One without (shorter than a GOP) takes SECOND_PASS_CANDIDATES of its good faces (at least
    SECOND_PASS_QUALITY of its tallest), those fewest frames after a keyframe. Then, as the pipeline embeds
    a track again EMBED_EVERY_SECONDS later (up to MAX_EMBEDDINGS moments), a trace whose faces so chosen
    leave a good face that far from all of them gets that one too (the fewest frames after a keyframe), and
    so on: a trace spanning a long GOP has faces of each of its moments to embed, not only of its first.
    """
    def depth(frame: int) -> int:
        return frame - (index.keyframe_at_or_before(frame) or 0)

    def apart(frame: int, planned: list[tuple[int, Box]]) -> bool:
        return all(abs(index.seconds_of(frame) - index.seconds_of(other)) >= EMBED_EVERY_SECONDS
                   for other, _ in planned)

    chosen = {pk: choose_faces(faces, allowed=lambda frame: depth(frame) <= KEYFRAME_REACH)
              for pk, faces in rows.items()}
    for pk, planned in chosen.items():
        choices = choose_faces(rows[pk])
        if not choices:
            continue
        tallest = max(box[3] for _, box in choices)
        good = sorted((c for c in choices if c[1][3] >= SECOND_PASS_QUALITY * tallest),
                      key=lambda c: (depth(c[0]), c[0]))
        if not planned:
            planned += good[:SECOND_PASS_CANDIDATES]
        moments: list[tuple[int, Box]] = []
        for face in sorted(planned, key=lambda c: c[0]):
            if apart(face[0], moments):
                moments.append(face)
        for face in good:
            if len(moments) >= MAX_EMBEDDINGS:
                break
            if apart(face[0], moments):
                moments.append(face)
                planned.append(face)
    return chosen


def face_region(frame: Any, box: Box) -> tuple[np.ndarray, Box]:
    """(RGB pixels around ``box``, the box in them): what ``align_face`` reads, without converting the frame.

    ``align_face`` only looks at a square of twice the face's longer side around its centre
    (ALIGN_INPUT / ALIGN_FACE); for a planar 4:2:0 frame (nearly all video) just that square of the
    Y, U and V planes is converted (~0.1 ms instead of ~10 ms for a whole 1080p frame). Other
    formats are converted whole.
    """
    if frame.format.name not in _I420:
        return frame.to_ndarray(format="rgb24"), box
    x, y, w, h = box
    reach = int(np.ceil(max(w, h) * ALIGN_INPUT / ALIGN_FACE / 2)) + 2
    cx, cy = x + w // 2, y + h // 2
    x0, y0 = max(0, (cx - reach) & ~1), max(0, (cy - reach) & ~1)
    x1, y1 = min(frame.width & ~1, (cx + reach + 1) & ~1), min(frame.height & ~1, (cy + reach + 1) & ~1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return frame.to_ndarray(format="rgb24"), box
    planes = []
    for number, (left, top, right, bottom) in enumerate(((x0, y0, x1, y1), (x0 // 2, y0 // 2, x1 // 2, y1 // 2),
                                                         (x0 // 2, y0 // 2, x1 // 2, y1 // 2))):
        plane = frame.planes[number]
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        planes.append(rows[top:bottom, left:right].ravel())
    i420 = np.concatenate(planes).reshape((y1 - y0) * 3 // 2, x1 - x0)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420), (x - x0, y - y0, w, h)


class BatchRead(NamedTuple):
    """What a reading lane got from one batch of frames: the readable faces as (trace pk, face), the pictures it
    decoded, its CPU seconds decoding and aligning, and the process that read it."""

    faces: list[tuple[int, Readable]]
    frames_decoded: int
    decode: float
    align: float
    pid: int


#: {frame: [(trace pk, rank among its choices, box)]}: the faces to read on each frame.
Wanted = dict[int, list[tuple[int, int, Box]]]
#: This process's reader of the file being re-embedded (:func:`open_lane`).
_lane: dict[str, FrameReader] = {}


def open_lane(path: str, index: Any, frame_threads: bool) -> None:
    """Open ``path`` for this process's :func:`read_batch` calls: the reading process's setup, and this
    process's before it reads. Two lanes fill two cores: each decodes on one thread (FFmpeg's frame threads
    cost ~25 % more CPU on this read for 1.3x the speed: bench/bench_reembed.py); one lane alone uses them."""
    _lane["reader"] = FrameReader(path, index, frame_threads=frame_threads)


def close_lane() -> None:
    reader = _lane.pop("reader", None)
    if reader is not None:
        reader.close()


def read_batch(wanted: Wanted) -> BatchRead:
    """Decode the frames of ``wanted`` (whole GOPs, each once) and align every chosen face on them
    (``embeddings.align_face_scored``; unreadable faces are left out), with each face's quality."""
    reader = _lane["reader"]
    before = reader.frames_decoded
    faces: list[tuple[int, Readable]] = []
    decode = align = 0.0
    clock = time.process_time()
    for number, frame in reader.read_many(wanted):
        decode += time.process_time() - clock
        clock = time.process_time()
        seconds = reader.index.seconds_of(number)
        for trace_pk, rank, box in wanted[number]:
            pixels, inside = face_region(frame, box)
            found = align_face_scored(pixels, inside)
            if found is not None:
                aligned, pose = found
                faces.append((trace_pk, Readable(exemplars.quality(box[3], pose, aligned), rank, seconds, box[3],
                                                 aligned)))
        align += time.process_time() - clock
        clock = time.process_time()
    return BatchRead(faces, reader.frames_decoded - before, decode, align, os.getpid())


def batches(wanted: Wanted, index: Any) -> list[Wanted]:
    """``wanted`` cut into batches in file order, each of whole GOPs (a GOP read by two lanes would have its
    reference pictures decoded twice) and at least BATCH_FRAMES frames (the last excepted)."""
    cut: list[Wanted] = []
    batch: Wanted = {}
    keyframe = None
    for number in sorted(wanted):
        starts = index.keyframe_at_or_before(number)
        if batch and starts != keyframe and len(batch) >= BATCH_FRAMES:
            cut.append(batch)
            batch = {}
        keyframe = starts
        batch[number] = wanted[number]
    if batch:
        cut.append(batch)
    return cut


def _traces_in(batch: Wanted) -> set[int]:
    """The traces with a face to read in ``batch``."""
    return {trace_pk for faces in batch.values() for trace_pk, _, _ in faces}


def _ready() -> None:
    """A call that does nothing: submitted first, it forks the reading process before this one opens the file."""


#: {trace pk: (the qualities of the faces embedded, the call giving their vectors and its CPU seconds)}
Calls = dict[int, tuple[list[float], Future]]


def _read_faces(media_file: MediaFile, index: Any, chosen: dict[int, list[tuple[int, Box]]], result: ReembedResult,
                on_progress: OnProgress | None, workers: bool) -> tuple[dict[int, list[Readable]], Calls]:
    """({trace pk: its readable faces}, their embeddings): every chosen face read and aligned, by two lanes — this
    process and a reading process (``workers``), each decoding whole batches of GOPs (:func:`batches`), the
    reading process kept QUEUED_BATCHES ahead — and each trace's :func:`best_faces` embedded here once every
    batch with its frames is read. A trace's aligned faces are let go once embedded (its list emptied)."""
    wanted: Wanted = defaultdict(list)
    for trace_pk, choices in chosen.items():
        for rank, (frame, box) in enumerate(choices):
            wanted[frame].append((trace_pk, rank, box))
    cut = batches(wanted, index)
    unread: Counter[int] = Counter()  # {trace pk: batches with its frames not read yet}
    for batch in cut:
        unread.update(_traces_in(batch))
    faces: dict[int, list[Readable]] = defaultdict(list)
    calls: Calls = {}
    total, done = len(wanted), 0

    def take(batch: Wanted, read: BatchRead) -> None:
        nonlocal done
        result.frames_decoded += read.frames_decoded
        result.timings["decode"] += read.decode
        result.timings["align"] += read.align
        result.faces_tried += sum(len(chosen_here) for chosen_here in batch.values())
        for trace_pk, face in read.faces:
            faces[trace_pk].append(face)
        for trace_pk in _traces_in(batch):
            unread[trace_pk] -= 1
            if not unread[trace_pk] and faces.get(trace_pk):
                best = best_faces(faces[trace_pk])
                calls[trace_pk] = ([face.quality for face in best],
                                   run_here(embed_faces, [face.aligned for face in best]))
                faces[trace_pk] = []  # embedded: only the order of traces is needed from here
        done += len(batch)
        if on_progress is not None:
            on_progress(done, total, f"{done} of {total} frames read")

    with Worker("reading", partial(open_lane, media_file.path, index, False), 1 if workers else 0) as lane:
        lane.submit(_ready)  # forks the reading process now, before this one opens the file or starts FFmpeg
        result.reading_processes = lane.processes
        open_lane(media_file.path, index, frame_threads=not lane.in_process)
        try:
            queued: deque[tuple[Wanted, Future]] = deque()
            for batch in cut:
                while queued and queued[0][1].done():
                    take(*_done(queued.popleft(), result))
                if lane.in_process and len(queued) < QUEUED_BATCHES:
                    queued.append((batch, lane.submit(read_batch, batch)))
                    continue
                take(batch, read_batch(batch))
                result.batches_read[0] += 1
            while queued:
                take(*_done(queued.popleft(), result))
        finally:
            close_lane()
    return faces, calls


def _done(queued: tuple[Wanted, Future], result: ReembedResult) -> tuple[Wanted, BatchRead]:
    """A queued batch and what was read of it: by the reading process, or here when that process is gone (it
    could not open the file, or died): the next calls then run here too (``Worker.submit``)."""
    batch, call = queued
    try:
        read = call.result()
    except BrokenExecutor:
        read = read_batch(batch)
    result.batches_read[0 if read.pid == os.getpid() else 1] += 1
    return batch, read


def embed_faces(aligned: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """(SFace's vectors of aligned faces, the CPU seconds they took)."""
    clock = time.process_time()
    return [embed_aligned(face) for face in aligned], time.process_time() - clock


class Readable(NamedTuple):
    """A chosen face YuNet could read: its quality, its rank among the trace's choices, its time (seconds), its
    height (pixels) and the aligned 112x112 face."""

    quality: float
    rank: int
    seconds: float
    height: int
    aligned: np.ndarray


@dataclass
class Embedded:
    """A trace's new vectors: the exemplars kept (best first) and their quality-weighted mean."""

    mean: np.ndarray
    exemplars: list[np.ndarray]


def new_evidence(face: Readable, other: Readable) -> bool:
    """Whether the pipeline would embed the later of two faces of a track after the earlier: EMBED_EVERY_SECONDS
    apart, or the later one EMBED_GROWTH times as tall (``tracker.new_evidence``, the rule of
    ``tracker.wants_embedding``)."""
    earlier, later = sorted((face, other), key=lambda f: f.seconds)
    return tracker.new_evidence(later.seconds - earlier.seconds, later.height, earlier.height)


def best_faces(readable: list[Readable]) -> list[Readable]:
    """The faces to embed, best first: as many as the pipeline's rule allows (up to FACES_PER_TRACE, each pair
    :func:`new_evidence`), of those sets the best by total quality (ties: the better ranked faces).

    A set rather than the best face and then what it leaves: of faces at 0, 1.4 and 2.9 s the best may be the
    middle one, which would leave no other, where the pipeline embeds the first and the last."""
    ordered = sorted(readable, key=lambda face: (-face.quality, face.rank))
    for size in range(min(FACES_PER_TRACE, len(ordered)), 0, -1):
        sets = [chosen for chosen in combinations(ordered, size)
                if all(new_evidence(a, b) for a, b in combinations(chosen, 2))]
        if sets:
            return list(max(sets, key=lambda chosen: (sum(face.quality for face in chosen),
                                                      [-face.rank for face in chosen])))
    return []


def _collect(faces: dict[int, list[Readable]], calls: Calls, result: ReembedResult) -> dict[int, Embedded]:
    """Per trace (in the order its first readable face was read), its embedded :func:`best_faces`: the most different
    kept as exemplars (``exemplars.choose``), their quality-weighted mean as the trace's embedding."""
    vectors = {}
    for trace_pk in faces:
        if trace_pk not in calls:
            continue
        qualities, call = calls[trace_pk]
        embedded, seconds = call.result()
        result.timings["embed"] += seconds
        result.faces_embedded += len(embedded)
        keep = exemplars.choose(embedded, qualities)
        vectors[trace_pk] = Embedded(exemplars.weighted_mean([embedded[i] for i in keep], [qualities[i] for i in keep]),
                                     [embedded[i] for i in keep])
    return vectors


def store_vectors(media_file: MediaFile, vectors: dict[int, Embedded | np.ndarray], versions: dict[int, int],
                  model: str = MODEL_NAME) -> tuple[int, int]:
    """Write mean and exemplars in one transaction; (traces updated, traces whose detections changed meanwhile).

    A bare vector (no exemplars) replaces the mean and clears the exemplars (they were of the old vector).
    """
    updated = 0
    with transaction.atomic():
        current = dict(Trace.objects.select_for_update().filter(file=media_file, pk__in=list(vectors))
                       .values_list("pk", "detections_version"))
        for trace_pk, found in vectors.items():
            if current.get(trace_pk) != versions[trace_pk]:
                continue
            mean, kept = (found.mean, found.exemplars) if isinstance(found, Embedded) else (found, [])
            updated += Trace.objects.filter(pk=trace_pk).update(embedding=to_bytes(mean), embedding_model=model,
                                                                exemplars=exemplars.pack(kept))
    return updated, len(vectors) - updated


def files_to_reembed(file_uuids: Iterable[str] = (), only_stale: bool = False) -> list[MediaFile]:
    """The files named (all files with traces when none is), or only those with stale traces."""
    files = MediaFile.objects.filter(traces__isnull=False).distinct().order_by("pk")
    uuids = [u.lower() for u in file_uuids]
    if uuids:
        files = files.filter(file_uuid__in=uuids)
    if only_stale:
        files = files.filter(pk__in=stale_traces().values("file_id"))
    return list(files)


__all__ = ["BATCH_FRAMES", "CANDIDATES_PER_TRACE", "FACES_PER_TRACE", "QUEUED_BATCHES", "Readable", "ReembedResult",
           "batches", "best_faces", "choose_faces", "embed_faces", "files_to_reembed", "new_evidence", "plan_faces",
           "read_batch", "reembed_file", "stale_traces", "store_vectors"]
