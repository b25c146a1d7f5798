"""Face analysis of a video, or of a span of it: detect, follow on every frame, embed — no database.

Frames come from the FFmpeg layer's :class:`~media_api.ffmpeg.frames.FrameReader` (frame N is
the N-th picture a decoder outputs, recognised by its pts from the registered frame index), so
a span starts exactly on its first frame — what a chunk of a long film needs. Every frame is
looked at for scene cuts and followed by the trackers (a grey image, no colour conversion);
faces are detected on sampled frames — every ``stride``-th frame of the file and the first
frame after each cut, a choice that does not depend on where a span starts — in a worker
process that runs ahead of the tracker, and a few faces per track are embedded (SFace, aligned here
on YuNet's landmarks) in another. On frames from 720p up to (not
including) 1080p, small faces (under about :data:`~media_api.faces.yunet.REDUCED_MIN_FACE_PX`) are
searched for on every other sample only (:data:`SMALL_FACE_EVERY`, again by frame number, and after
every cut): the detector's full-size pass is most of the cost, and the tracker carries small faces
between — except in a crowd (:data:`CROWD_SMALL_FACES`, :class:`SmallFaceCadence`), where every sample
searches them. 1080p searches them on every sample (:data:`SMALL_FACES_ALWAYS_PIXELS`).

Writing the result is :mod:`media_api.services.faces`' job.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from tqdm import tqdm

from media_api.faces import exemplars
from media_api.faces.cuts import SceneCutDetector
from media_api.faces.detector import REDUCED_MIN_FACE_PX, Face, detect, detect_near, load_detector, reduces
from media_api.faces.embeddings import align_face_scored, embed_aligned, load_sface
from media_api.faces.followers import FollowerBudget
from media_api.faces.tracker import FaceTracker, Track
from media_api.faces.workers import SharedFrames, Worker, shared_frame
from media_api.ffmpeg.frames import FrameReader
from media_api.ffmpeg.index import FrameIndexData

#: Faces are detected about this many times per second of video by default.
SAMPLES_PER_SECOND = 5
#: Faces smaller than about REDUCED_MIN_FACE_PX are searched for on every SMALL_FACE_EVERY-th sample (by
#: sample number in the file, and on the first frame after each cut); the other samples of frames of
#: 720p and more are searched at half size, a quarter of the detector's work (docs/faces.md, "Speed").
#: A chunk's overlap grows with it (chunks.OVERLAP_SAMPLES).
SMALL_FACE_EVERY = 2
#: ... except on frames of 1080 lines (this many pixels and more; larger frames are shrunk to 1080p
#: first), which search small faces on every sample: in a 1080p crowd the 16-40 px faces are what
#: the half-size samples cannot see (bench/bench_crowd.py: 16-24 px 51 -> 65 %, >= 24 px 94 -> 98 %),
#: and 1080p can afford it (+22 % CPU, still 1.3x realtime on two cores), where at 720p a crowd would
#: fall under 2x (docs/faces.md, "Crowds").
SMALL_FACES_ALWAYS_PIXELS = 1440 * 1080
#: Detector worker processes for frames of 720p and more (smaller frames: one). They take the samples in
#: turn, so the core the main process leaves idle while it waits is used; each frame's faces come from
#: one whole detection, whichever process ran it, so the result is the same as with one.
DETECTOR_PROCESSES = 2
#: Each detector process may run this many samples ahead of the tracker (frames wait in memory meanwhile).
LOOKAHEAD = 2
#: A crowd searches small faces on every sample: while the latest regular full search (a
#: SMALL_FACE_EVERY-th sample, or the first after a cut) found at least this many faces under
#: REDUCED_MIN_FACE_PX — faces the half-size samples cannot see and the tracker carries poorly when
#: they are many (24-28 px faces of the 720p crowd mosaic: 88 % stored on every other sample, 93 % on
#: every sample, bench/bench_crowd.py). Ordinary 720p footage stays at every other sample: its full
#: searches find at most 6 such faces (facenet demo scaled to 720p, 11 people; Hamilton upscaled: at
#: most 1), the 720p crowd mosaic at least 32 (docs/faces.md, "Crowds").
CROWD_SMALL_FACES = 12
#: A full search's count decides from this many samples (by frame number) after its own on: a fixed
#: delay, so the choice of samples (and the result) depends neither on timing nor on the number of
#: detector processes; short enough that a chunk, which starts decoding chunks.OVERLAP_SAMPLES (8)
#: samples early, sees the search that decides its first own sample (its cadence is then the one
#: pass's). The sample is usually done by then (two more run meanwhile); if not, the tracker waits.
CROWD_DELAY_SAMPLES = 3
#: A followed face that a sample's detections do not match is looked for again on a crop around it, seen
#: bigger (``FaceTracker.observe``, ``detector.detect_near``) before it counts as missed.
LOOK_AGAIN = True
#: Pixel formats whose first plane is the 8-bit luma, read without any conversion.
_LUMA_FIRST = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}


@dataclass
class FaceAnalysis:
    """What the pipeline found in a span of one video (not yet stored)."""

    tracks: list[Track]
    start: int
    end: int
    frames_decoded: int
    frames_sampled: int
    cuts: list[int]
    seconds: float
    stride: int
    faces_embedded: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    detector_processes: int = 0  # worker processes the detector ran in (0: inline)

    def rows(self) -> list[dict[str, Any]]:
        """Detections in the import format (with ``origin``); trace ids are 1.. in order of first frame."""
        rows = []
        for trace_id, track in enumerate(self.tracks, start=1):
            for frame, box, detected, score in zip(track.frames, track.boxes, track.detected, track.scores,
                                                   strict=True):
                rows.append({"trace_id": trace_id, "frame_number": frame, "x": box[0], "y": box[1],
                             "width": box[2], "height": box[3], "confidence": round(float(score), 4),
                             "label": "face", "origin": "detected" if detected else "tracked"})
        return rows

    def trace_embeddings(self) -> dict[int, np.ndarray]:
        embeddings = {}
        for trace_id, track in enumerate(self.tracks, start=1):
            vector = track.mean_embedding()
            if vector is not None:
                embeddings[trace_id] = vector
        return embeddings


def default_stride(fps: float) -> int:
    """About :data:`SAMPLES_PER_SECOND` detections per second of video (at least every frame)."""
    return max(1, int(round(fps / SAMPLES_PER_SECOND)))


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The frame's grey (luma) image, without a colour conversion for the usual formats."""
    if frame.format.name in _LUMA_FIRST:
        plane = frame.planes[0]
        return np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
    return frame.to_ndarray(format="gray")


@dataclass
class _Frame:
    """A decoded frame waiting for its turn in the tracker (and, if sampled, for its detections)."""

    number: int
    image: np.ndarray  # the tracker's grey image
    cut: bool
    rgb: np.ndarray | None = None
    faces: Future | None = None
    small_faces: bool = True
    crowd: bool = False  # a crowd searched on every sample: fewer Median Flow followers (followers.CROWD_FOLLOWED)


def analyse_video(path: str | Path, index: FrameIndexData, fps: float, *, start: int = 0, end: int | None = None,
                  stride: int | None = None, progress: bool = False, workers: bool = True, raw: bool = False,
                  on_progress: Callable[[int, int], object] | None = None,
                  detector_processes: int | None = None) -> FaceAnalysis:
    """Detect, follow and embed the faces of frames ``start..end`` (inclusive; default: the whole file).

    Processes share the work: this one decodes, finds cuts and tracks; detector workers
    (:data:`DETECTOR_PROCESSES` on frames of 720p and more, else one; ``detector_processes``, 1 or more,
    to choose; ``workers=False`` for none)
    run the face detector on the sampled frames, each up to :data:`LOOKAHEAD` samples ahead of the
    tracker; an embedding worker computes face embeddings. ``workers=False`` runs everything inline (a
    job queue's worker process, which gets its parallelism from running several of them).
    ``raw=True`` returns the tracks as followed, before pieces are joined and noise dropped (a
    chunk of a long file, stitched later: :mod:`media_api.faces.chunks`). ``on_progress(done,
    total)`` is called about once a second of video; whatever it raises stops the analysis.
    """
    if stride is not None and stride < 1:
        raise ValueError("stride must be at least 1")
    end = len(index) - 1 if end is None else end
    stride = stride or default_stride(fps)
    started = time.perf_counter()
    count = 1 if workers else 0
    # SFace and the detector's resizing run OpenCV in the worker processes, which are forked: a child that
    # inherits OpenCV's thread pool (started here by an earlier detection or tracking) deadlocks on the pool's
    # lock (seen in the tests). One OpenCV thread per process stops the pool; each process is one
    # lane of the two cores anyway (two detector processes, not OpenCV threads, use the second).
    cv2.setNumThreads(1)
    with ExitStack() as stack:
        embedder = stack.enter_context(Worker("embedding", load_sface, count))
        reader = stack.enter_context(FrameReader(path, index))
        detector: Worker | None = None  # made on the first frame, once its size is known
        shared: SharedFrames | None = None  # sampled frames go to the detector processes through it
        lookahead = LOOKAHEAD
        cadence: SmallFaceCadence | None = None  # which samples search small faces (made on the first)
        state = _Run(fps=fps, embedder=embedder)
        cut_detector = SceneCutDetector()
        waiting: deque[_Frame] = deque()
        bar = tqdm(total=end - start + 1, unit="frame", disable=not progress, desc=Path(path).name[:30])
        report_every = max(1, int(round(fps)))
        for number, frame in reader.iter_range(start, end):
            if on_progress is not None and (number - start) % report_every == 0:
                on_progress(number - start, end - start + 1)
            grey = luma(frame)
            if state.tracker is None:
                state.budget = FollowerBudget()
                state.tracker = FaceTracker(frame.width, frame.height, fps, make_follower=state.budget)
                processes = count and (detector_processes
                                       or (DETECTOR_PROCESSES if reduces(frame.width, frame.height) else 1))
                lookahead = LOOKAHEAD * max(1, processes)
                if processes:  # before the detector's processes are forked (on its first call)
                    shared = stack.enter_context(SharedFrames((frame.height, frame.width, 3), lookahead + 2))
                detector = stack.enter_context(Worker("detector", load_detector, processes))
            image = state.tracker.track_image(grey)
            cut = cut_detector.is_cut(image) and number > start
            item = _Frame(number, image, cut)
            if cut or number == start or number % stride == 0:  # a sample: to the detector, now
                item.rgb = frame.to_ndarray(format="rgb24")
                if cadence is None:
                    big = reduces(frame.width, frame.height)
                    full = frame.width * frame.height >= SMALL_FACES_ALWAYS_PIXELS
                    cadence = SmallFaceCadence(stride, not big or full, crowds=big)
                item.small_faces = cadence.wants(number, cut)
                item.crowd = cadence.crowd
                slot = shared.put(item.rgb) if shared is not None else None
                if slot is None:
                    item.faces = detector.submit(detect, item.rgb, item.small_faces)
                else:
                    item.faces = detector.submit(detect_shared, shared.key, slot, item.small_faces)
                    shared.hold(slot, item.faces)
                cadence.searched(number, cut, item.faces)
            waiting.append(item)
            while waiting and (waiting[0].faces is None or waiting[0].faces.done()
                               or sum(w.faces is not None for w in waiting) > lookahead):
                state.process(waiting.popleft())
                bar.update(1)
        while waiting:
            state.process(waiting.popleft())
            bar.update(1)
        bar.close()
        clock = time.perf_counter()
        if state.tracker is None:
            tracks = []
        else:
            tracks = state.tracker.close() if raw else state.tracker.finish()
        state.timings["finish"] = time.perf_counter() - clock
        used = detector.processes if detector is not None else 0
    return FaceAnalysis(tracks=tracks, start=start, end=end, frames_decoded=state.frames, frames_sampled=state.samples,
                        cuts=state.cuts, seconds=time.perf_counter() - started, stride=stride,
                        faces_embedded=sum(len(t.embeddings) for t in tracks), timings=state.timings,
                        detector_processes=used)


class SmallFaceCadence:
    """Which samples search small faces: all (``always``: frames under 720p, or of 1080 lines), else
    every :data:`SMALL_FACE_EVERY`-th sample by frame number and the first after each cut — and every
    sample while the scene is a crowd (:attr:`crowd`, only with ``crowds``: frames of 720p and more): the
    latest regular search at least :data:`CROWD_DELAY_SAMPLES` samples back found
    :data:`CROWD_SMALL_FACES` faces under ``REDUCED_MIN_FACE_PX`` or more. Only regular searches count (a
    crowd's extra ones do not keep it a crowd), and a cut forgets the shot before, so the choice depends
    on the frames of the last second or so, not on where a span started. In a crowd the tracker also
    follows fewer faces by Median Flow (``followers.CROWD_FOLLOWED``), at 1080p too.
    """

    def __init__(self, stride: int, always: bool = False, crowds: bool = True) -> None:
        self.stride = stride
        self.always = always
        self.crowds = crowds
        self.crowd = False
        self._pending: deque[tuple[int, Future]] = deque()  # regular searches not yet counted

    def wants(self, number: int, cut: bool) -> bool:
        """Whether the sample on frame ``number`` (``cut``: the first of a shot) searches small faces."""
        if self.crowds:
            if cut:
                self._pending.clear()
                self.crowd = False
            sample = number // self.stride
            while self._pending and self._pending[0][0] <= sample - CROWD_DELAY_SAMPLES:
                faces = self._pending.popleft()[1].result()  # (an error is the detector's, raised here)
                self.crowd = crowded(faces)
        return self.always or self._regular(number, cut) or self.crowd

    def searched(self, number: int, cut: bool, faces: Future) -> None:
        """Record a sample's detections to come (only regular full searches are counted)."""
        if self.crowds and self._regular(number, cut):
            self._pending.append((number // self.stride, faces))

    def _regular(self, number: int, cut: bool) -> bool:
        """A regular full search: every SMALL_FACE_EVERY-th sample by frame number, and the first after a cut."""
        return cut or (number // self.stride) % SMALL_FACE_EVERY == 0


def crowded(faces: list[Face]) -> bool:
    """Whether a full search's faces make a crowd: :data:`CROWD_SMALL_FACES` under ``REDUCED_MIN_FACE_PX``."""
    return sum(face.height < REDUCED_MIN_FACE_PX for face in faces) >= CROWD_SMALL_FACES


def detect_shared(key: int, slot: int, small_faces: bool) -> list[Face]:
    """:func:`~media_api.faces.detector.detect` on a frame in shared memory (what a detector process runs)."""
    return detect(shared_frame(key, slot), small_faces)


@dataclass
class _Run:
    """The tracker's side of one analysis: frames in order, detections as they arrive, faces to embed."""

    fps: float
    embedder: Worker
    tracker: FaceTracker | None = None
    budget: FollowerBudget | None = None
    frames: int = 0
    samples: int = 0
    cuts: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("track", "wait_detector", "embed"), 0.0))

    def process(self, item: _Frame) -> None:
        self.frames += 1
        if item.cut:
            self.cuts.append(item.number)
            self.tracker.cut()
        clock = time.perf_counter()
        self.tracker.advance(item.number, item.image)
        self.timings["track"] += time.perf_counter() - clock
        if item.faces is None:
            return
        self.samples += 1
        clock = time.perf_counter()
        faces = item.faces.result()
        self.timings["wait_detector"] += time.perf_counter() - clock
        clock = time.perf_counter()
        if self.budget is not None:
            self.budget.crowd = item.crowd
        min_height = 0 if item.small_faces else REDUCED_MIN_FACE_PX
        look_near = functools.partial(detect_near, item.rgb) if LOOK_AGAIN else None
        for track, face in self.tracker.observe(item.number, item.image, faces, min_height, look_near):
            if self.tracker.wants_embedding(track, face, item.number):
                embed_face(track, item.rgb, face, item.number, self.embedder.submit)
        self.timings["embed"] += time.perf_counter() - clock


def embed_face(track: Track, rgb: np.ndarray, face: Face, frame: int,
               submit: Callable[..., Future | np.ndarray]) -> bool:
    """Try to embed a track's face on a sample; True when it was readable (and sent to ``submit``).

    Aligns on YuNet's landmarks (~2 ms; None: unreadable) and records the face's quality
    (``exemplars.quality``: size, how frontal, how sharp; ~0.1 ms) next to its vector, the score a
    re-embed ranks faces by: the trace's exemplars are chosen by it, best first.
    """
    track.last_tried, track.embed_tries = frame, track.embed_tries + 1
    found = align_face_scored(rgb, face.box)
    if found is None:
        return False
    aligned, pose = found
    track.embeddings.append(submit(embed_aligned, aligned))
    track.qualities.append(exemplars.quality(face.height, pose, aligned))
    track.last_embedded, track.embedded_height = frame, face.height
    return True


__all__ = ["FaceAnalysis", "SmallFaceCadence", "analyse_video", "crowded", "default_stride", "embed_face", "luma"]
