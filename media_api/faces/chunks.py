"""Face analysis of a long file in chunks, on any number of workers, stitched into one result.

A file is cut at keyframes into chunks of a few minutes (:func:`plan_chunks`); each chunk is
analysed on its own (:func:`analyse_chunk`, any worker, any order) and the results are stitched
(:func:`stitch`) so that a person on screen across a chunk boundary is one trace, as without chunks.

How the seams stay invisible:

* Samples are chosen by frame number (every ``stride``-th frame of the file, and the first frame
  after each cut), never relative to where a chunk starts, so every chunk detects on exactly the
  frames the whole-file run detects on.
* Each chunk but the first starts its decode :data:`OVERLAP_SAMPLES` samples early. In that
  overlap it tracks the same people the previous chunk was tracking, re-anchored on the same
  detections; its boxes there are only used to recognise them: a track of this chunk that holds a
  detection identical to one of a track of the previous chunk on an overlap sample continues that
  track from where that one stopped; other frames before the chunk's own start are dropped.
* Cuts are found from the second decoded frame of a chunk on, so a cut on a chunk's first own
  frame is still seen; shots are renumbered from the file's cuts before the pieces of one person
  are joined and noise is dropped — once, over the whole file (:func:`~media_api.faces.tracker.finalize_tracks`).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from media_api.faces.pipeline import SMALL_FACE_EVERY, FaceAnalysis, analyse_video
from media_api.faces.tracker import MAX_MISSES, MIN_DETECTIONS, Track, finalize_tracks, iou
from media_api.ffmpeg.index import FrameIndexData

#: Chunks run this long (seconds of video), cut at the first keyframe after that.
CHUNK_SECONDS = 60.0
#: Chunks overlap their predecessor by this many detector samples: a face the tracker still follows
#: is detected at least once in SMALL_FACE_EVERY * (MAX_MISSES + 1) (it may be missed MAX_MISSES samples in
#: a row, and a small face is only searched for on every SMALL_FACE_EVERY-th sample of 720p and more), and
#: a track is looked for where a sample missed it once it holds MIN_DETECTIONS detections
#: (``tracker._worth_a_look``), which takes up to SMALL_FACE_EVERY * MIN_DETECTIONS more: with 4, a 720p
#: crowd in 2-s chunks differed from one pass on 447 of 7 583 rows, with 8 on 72 of 7 537
#: (bench/bench_crowd.py --chunks; 129 of 7 195 before the closer look).
OVERLAP_SAMPLES = SMALL_FACE_EVERY * (MAX_MISSES + 1 + MIN_DETECTIONS)
#: Two detections on the same frame are the same one (the detector is deterministic).
SAME_DETECTION_IOU = 0.9


def plan_chunks(index: FrameIndexData, seconds: float = CHUNK_SECONDS) -> list[tuple[int, int]]:
    """(first, last) frame of each chunk: about ``seconds`` long, each starting on a keyframe."""
    total = len(index)
    starts = [0]
    for keyframe in (int(k) for k in index.keyframes):
        if keyframe > starts[-1] and index.seconds_of(keyframe) - index.seconds_of(starts[-1]) >= seconds:
            starts.append(keyframe)
    return [(s, (starts[i + 1] - 1) if i + 1 < len(starts) else total - 1) for i, s in enumerate(starts)]


def decode_start(first: int, stride: int) -> int:
    """Where a chunk starting at ``first`` begins decoding: OVERLAP_SAMPLES samples earlier."""
    if first == 0:
        return 0
    return max(0, (first - OVERLAP_SAMPLES * stride) // stride * stride)


@dataclass
class ChunkResult:
    """What one chunk found, in a form a job can store between tasks (:meth:`to_bytes`)."""

    first: int
    last: int
    tracks: list[Track]
    cuts: list[int]
    frames_decoded: int
    frames_sampled: int
    seconds: float
    stride: int
    extra: dict = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        payload = {
            "first": self.first, "last": self.last, "cuts": self.cuts, "frames_decoded": self.frames_decoded,
            "frames_sampled": self.frames_sampled, "seconds": self.seconds, "stride": self.stride,
            "tracks": [{"key": t.key, "frames": t.frames, "boxes": t.boxes, "detected": t.detected,
                        "scores": t.scores, "embeddings": [np.asarray(e).tolist() for e in t.embeddings],
                        "qualities": t.qualities}
                       for t in self.tracks],
        }
        return zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 6)

    @classmethod
    def from_bytes(cls, blob: bytes) -> ChunkResult:
        payload = json.loads(zlib.decompress(bytes(blob)))
        tracks = []
        for t in payload["tracks"]:
            track = Track(key=t["key"], shot=0, frames=t["frames"], boxes=[tuple(b) for b in t["boxes"]],
                          detected=t["detected"], scores=t["scores"])
            track.embeddings = [np.asarray(e, dtype=np.float32) for e in t["embeddings"]]
            track.qualities = [float(q) for q in t.get("qualities", ())]
            tracks.append(track)
        return cls(payload["first"], payload["last"], tracks, payload["cuts"], payload["frames_decoded"],
                   payload["frames_sampled"], payload["seconds"], payload["stride"])


def analyse_chunk(path: str | Path, index: FrameIndexData, fps: float, first: int, last: int, stride: int,
                  **kwargs) -> ChunkResult:
    """Analyse frames ``first..last`` (plus the overlap before them); tracks as followed, not yet joined."""
    start = decode_start(first, stride)
    analysis = analyse_video(path, index, fps, start=start, end=last, stride=stride, raw=True, **kwargs)
    cuts = [c for c in analysis.cuts if c >= first]
    own_frames = last - first + 1
    own_samples = sum(1 for n in range(first, last + 1) if n % stride == 0 or n in cuts or n == first == 0)
    return ChunkResult(first, last, analysis.tracks, cuts, own_frames, own_samples, analysis.seconds, stride)


def _detections(track: Track, below: int) -> dict[int, tuple]:
    return {f: b for f, b, d in zip(track.frames, track.boxes, track.detected, strict=True) if d and f < below}


def _keep_from(track: Track, first: int) -> Track | None:
    """The track without its frames before ``first`` (None when nothing is left)."""
    keep = next((i for i, f in enumerate(track.frames) if f >= first), None)
    if keep is None:
        return None
    track.frames, track.boxes = track.frames[keep:], track.boxes[keep:]
    track.detected, track.scores = track.detected[keep:], track.scores[keep:]
    return track


def stitch(chunks: list[ChunkResult], fps: float) -> FaceAnalysis:
    """One analysis of the whole file from its chunks (in any order), as if it had been analysed at once."""
    chunks = sorted(chunks, key=lambda c: c.first)
    tracks: list[Track] = []
    key = 0
    for chunk in chunks:
        previous = [t for t in tracks if t.end >= chunk.first - OVERLAP_SAMPLES * chunk.stride - 1]
        for track in chunk.tracks:
            key += 1
            track.key = key
            continued = _continues(_detections(track, chunk.first), previous)
            # A continued track takes over from where its predecessor stopped: the previous chunk cut a
            # track that had just missed a sample back to before that sample when its frames ran out,
            # where the whole-file pass, seeing the next sample, kept those frames.
            rest = _keep_from(track, chunk.first if continued is None else continued.end + 1)
            if rest is None:
                continue  # seen only in the overlap: the previous chunk has it
            if continued is not None:
                previous.remove(continued)  # one continuation each
                continued.extend(rest)  # in order: the predecessor ends before chunk.first
            else:
                tracks.append(rest)
    cuts = sorted(c for chunk in chunks for c in chunk.cuts)
    final = finalize_tracks(tracks, fps, cuts)
    return FaceAnalysis(tracks=final, start=chunks[0].first, end=chunks[-1].last,
                        frames_decoded=sum(c.frames_decoded for c in chunks),
                        frames_sampled=sum(c.frames_sampled for c in chunks), cuts=cuts,
                        seconds=sum(c.seconds for c in chunks), stride=chunks[0].stride,
                        faces_embedded=sum(len(t.embeddings) for t in final))


def _continues(seen: dict[int, tuple], previous: list[Track]) -> Track | None:
    """The previous chunk's track holding the same detections as ``seen`` on the overlap samples."""
    best, best_count = None, 0
    for track in previous:
        theirs = _detections(track, 1 << 62)
        count = sum(1 for f, box in seen.items() if f in theirs and iou(box, theirs[f]) >= SAME_DETECTION_IOU)
        if count > best_count:
            best, best_count = track, count
    return best
