"""The frame index: presentation timestamp of every frame and where the keyframes are.

Frame N (spec §1) is the N-th picture a decoder outputs from the start of the file. The
index maps N to its pts (in the stream's time base) so any frame can be reached by seeking
to the keyframe at or before it and decoding forward to exactly that pts.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class FrameIndexData:
    pts: np.ndarray  # int64, one per frame, presentation order
    keyframes: np.ndarray  # int32 frame numbers of keyframes, ascending
    time_base: Fraction

    def __len__(self) -> int:
        return int(self.pts.shape[0])

    @property
    def total_frames(self) -> int:
        return len(self)

    def pts_of(self, frame_number: int) -> int:
        return int(self.pts[frame_number])

    def seconds_of(self, frame_number: int) -> float:
        """Presentation time of a frame relative to the first frame."""
        return float((int(self.pts[frame_number]) - int(self.pts[0])) * self.time_base)

    def keyframe_at_or_before(self, frame_number: int) -> int | None:
        """Frame number of the keyframe to seek to for ``frame_number`` (None: file start)."""
        pos = int(np.searchsorted(self.keyframes, frame_number, side="right")) - 1
        return int(self.keyframes[pos]) if pos >= 0 else None

    def frame_at_seconds(self, seconds: float) -> int:
        """The frame on screen at ``seconds`` after the first frame (clamped to the file)."""
        target = int(self.pts[0]) + int(Fraction(seconds).limit_denominator(10**9) / self.time_base)
        pos = int(np.searchsorted(self.pts, target, side="right")) - 1
        return min(max(pos, 0), len(self) - 1)

    def frame_of_pts(self, pts: int) -> int | None:
        pos = int(np.searchsorted(self.pts, pts, side="left"))
        if pos < len(self) and int(self.pts[pos]) == pts:
            return pos
        return None

    def duration_seconds(self, fps: Fraction) -> float:
        """From the first frame's start to the last frame's end."""
        if len(self) == 0:
            return 0.0
        return self.seconds_of(len(self) - 1) + float(1 / fps)

    # Compact storage: delta-encoded, zlib-compressed arrays (a 20-minute CFR video packs
    # its 36 000 timestamps into about a kilobyte).
    def pts_blob(self) -> bytes:
        deltas = np.diff(self.pts, prepend=np.int64(0)).astype("<i8")
        return zlib.compress(deltas.tobytes(), 6)

    def keyframes_blob(self) -> bytes:
        return zlib.compress(self.keyframes.astype("<i4").tobytes(), 6)

    @classmethod
    def from_blobs(cls, pts_blob: bytes, keyframes_blob: bytes, time_base: Fraction) -> FrameIndexData:
        deltas = np.frombuffer(zlib.decompress(bytes(pts_blob)), dtype="<i8")
        keyframes = np.frombuffer(zlib.decompress(bytes(keyframes_blob)), dtype="<i4")
        return cls(pts=np.cumsum(deltas).astype(np.int64), keyframes=keyframes.astype(np.int32), time_base=time_base)
